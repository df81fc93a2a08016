"""The learned policy: an MLP behaviour-cloned from noisy scripted-expert demos, whose last hidden
layer is the ``hidden_state`` a rollout records.

Demos inject Gaussian noise into the *executed* action while the training target stays the
expert's action at the visited state, so the policy sees (and learns to leave) off-expert states.
A multi-task policy takes the task as a one-hot vector after the observation.
"""

from __future__ import annotations

import time
from dataclasses import asdict

import numpy as np
import torch
from torch import nn

from vlarisk.core.settings import PolicySettings  # the collect block's policy settings
from vlarisk.physics.env import TaskEnv


def _array(value) -> np.ndarray:
    """A checkpoint tensor as a float32 numpy array."""
    return np.array(value.numpy() if isinstance(value, torch.Tensor) else value, dtype=np.float32)


class MlpPolicy:
    """A numpy copy of the trained MLP (inference in worker processes, no torch there):
    normalised observation + one-hot task -> tanh hidden layers -> tanh 4-D action."""

    def __init__(self, checkpoint: dict) -> None:
        self.tasks = list(checkpoint["tasks"])
        self.mean = _array(checkpoint["obs_mean"])
        self.std = _array(checkpoint["obs_std"])
        state = checkpoint["state_dict"]
        count = len([k for k in state if k.endswith(".weight")])
        self.layers = [(_array(state[f"{i}.weight"]).T.copy(), _array(state[f"{i}.bias"])) for i in range(0, 2 * count, 2)]

    def features(self, observation: np.ndarray, task: str) -> np.ndarray:
        """The network input: the normalised observation and the task's one-hot code."""
        onehot = np.zeros(len(self.tasks), dtype=np.float32)
        onehot[self.tasks.index(task)] = 1.0
        return np.concatenate([(np.asarray(observation, dtype=np.float32) - self.mean) / self.std, onehot])

    def act(self, observation: np.ndarray, task: str) -> tuple[np.ndarray, np.ndarray]:
        """The 4-D action (float64) and the last hidden layer (float32) at an observation."""
        x = self.features(observation, task)
        for weight, bias in self.layers[:-1]:
            x = np.tanh(x @ weight + bias)
        weight, bias = self.layers[-1]
        return np.tanh(x @ weight + bias).astype(np.float64), x.astype(np.float32)


def network(input_dim: int, hidden_dims: tuple[int, ...]) -> nn.Sequential:
    """The torch MLP whose state dict :class:`MlpPolicy` reads (Linear layers at even indices)."""
    layers, width = [], input_dim
    for size in hidden_dims:
        layers += [nn.Linear(width, size), nn.Tanh()]
        width = size
    return nn.Sequential(*layers, nn.Linear(width, 4), nn.Tanh())


def collect_demos(tasks: list[str], settings: PolicySettings) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Noisy expert demos: observations, task indices, the expert's clean actions, and the clean success rate."""
    observations, task_ids, targets, successes = [], [], [], 0
    rng = np.random.default_rng([settings.seed, 11])
    for task_index, task in enumerate(tasks):
        env = TaskEnv(task)
        for demo in range(settings.demos_per_task):
            observation = env.reset(10_000_000 + 1000 * settings.seed + demo)  # demo seeds never meet collection seeds
            for _ in range(settings.horizon):
                expert = env.expert_action(observation)
                observations.append(observation.astype(np.float32))
                task_ids.append(task_index)
                targets.append(expert.astype(np.float32))
                observation, solved = env.step(np.clip(expert + rng.normal(0, settings.demo_noise, 4), -1, 1))
                if solved:
                    successes += 1
                    break
    rate = successes / (len(tasks) * settings.demos_per_task)
    return np.stack(observations), np.asarray(task_ids), np.stack(targets), rate


def train_policy(tasks: list[str], settings: PolicySettings, log=print) -> dict:
    """Behaviour-clone a policy for ``tasks``; the checkpoint :class:`MlpPolicy` and ``collect`` load."""
    started = time.perf_counter()
    torch.manual_seed(settings.seed)
    observations, task_ids, targets, demo_success = collect_demos(tasks, settings)
    mean, std = observations.mean(axis=0), observations.std(axis=0) + 1e-3
    onehot = np.eye(len(tasks), dtype=np.float32)[task_ids]
    inputs = torch.from_numpy(np.concatenate([(observations - mean) / std, onehot], axis=1))
    labels = torch.from_numpy(targets)
    model = network(inputs.shape[1], settings.hidden_dims)
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.lr)
    generator = torch.Generator().manual_seed(settings.seed)
    for epoch in range(settings.epochs):
        order = torch.randperm(len(inputs), generator=generator)
        total = 0.0
        for batch in order.split(settings.batch_size):
            loss = nn.functional.mse_loss(model(inputs[batch]), labels[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(batch)
        if epoch == settings.epochs - 1 or epoch % 20 == 0:
            log(f"policy epoch {epoch + 1}/{settings.epochs}: mse {total / len(inputs):.5f}")
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return {
        "tasks": list(tasks),
        "state_dict": state,
        "obs_mean": torch.from_numpy(mean),
        "obs_std": torch.from_numpy(std),
        "settings": asdict(settings),
        "demo_steps": len(inputs),
        "demo_success_rate": demo_success,
        "train_seconds": time.perf_counter() - started,
    }


def save_policy(checkpoint: dict, path) -> None:
    """Write a policy checkpoint (tensors and plain data only: it loads with ``weights_only``)."""
    torch.save(checkpoint, path)


def load_policy(path) -> dict:
    """Read a policy checkpoint written by :func:`save_policy`."""
    return torch.load(path, map_location="cpu", weights_only=True)
