"""Training batches: one source's (:class:`BatchStream`) or several sources' interleaved (:class:`MixedBatchStream`).

A source's batches are made of whole distinct hidden states (an action chunk's steps share one):
a seeded permutation of the training rows' distinct states, cut so that each batch holds about
``batch_size`` steps. The network then runs once per distinct state and the loss is taken over
the batch's steps (see :func:`vlarisk.train.training.training_loss`), which is the per-step objective at
a fraction of the work. Data without repeated states gives exactly the batches of one row per
step. Several sources' batches are shuffled together, so sources are sampled in proportion to
their training size and every training step is seen once per epoch. Everything depends only on
``(seed, epoch)``, so a resumed run sees exactly the batches of an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vlarisk.data.dataset import RiskDataset
from vlarisk.model.inference import gather_rows


@dataclass
class EpochPlan:
    """One epoch's batches as flat arrays: batch ``b`` has the distinct states
    ``units[unit_bounds[b]:unit_bounds[b + 1]]`` (positions in ``BatchStream.units``, ascending)
    and the steps ``steps[step_bounds[b]:step_bounds[b + 1]]`` (positions in the training rows),
    whose states are ``inverse`` (positions within the batch's states)."""

    units: np.ndarray
    unit_bounds: np.ndarray
    steps: np.ndarray
    step_bounds: np.ndarray
    inverse: np.ndarray

    def __len__(self) -> int:
        return len(self.unit_bounds) - 1


class BatchStream:
    """Training batches of whole distinct states, drawn from a seeded permutation of them.

    On a GPU with room for it, the normalised distinct training states are copied to the device
    once and each batch is an index into them (the epoch's whole index is uploaded once, so a step
    costs no host work). Otherwise each batch's states are gathered from the (memory-mapped)
    dataset straight into a reused buffer and normalised there in place, so no normalised copy of
    the data, and no per-batch allocation, is ever made in host memory.

    Each batch is ``(hidden [m, D], target [n, 7], inverse)``: the batch's ``m`` distinct states,
    the labels of its ``n`` steps (``n`` is about ``batch_size``; a state's steps are never split
    between batches) and, for every step, the position of its state in ``hidden`` (``None`` when
    every state of the batch has one step, so ``hidden[i]`` belongs to ``target[i]``).

    The batch tensors of the host path are reused: a yielded ``hidden`` is valid until the next
    batch is drawn from the same stream (the training loop finishes its step before that). Within
    a batch the states are in ascending order (sequential reads).
    """

    def __init__(
        self, dataset: RiskDataset, rows: np.ndarray, mean: torch.Tensor, std: torch.Tensor, device: torch.device, batch_size: int
    ):
        self.dataset, self.rows, self.device, self.batch_size = dataset, np.asarray(rows), device, batch_size
        if len(self.rows) and (int(self.rows.min()) < 0 or int(self.rows.max()) >= len(dataset)):
            raise IndexError(f"training rows out of range for a dataset of {len(dataset)} steps")
        self.mean, self.std = mean.to(device), std.to(device)
        step_states = np.asarray(dataset.state_index[self.rows], dtype=np.int64)
        # units: the distinct states of the training rows (rows of dataset.states), with their step counts
        self.units, unit_of_row, self.counts = np.unique(step_states, return_inverse=True, return_counts=True)
        self.unit_steps = np.argsort(unit_of_row.reshape(-1), kind="stable")  # row positions grouped by unit
        self.unit_first = np.cumsum(self.counts) - self.counts  # where each unit's steps start in unit_steps
        self.labels = torch.from_numpy(np.asarray(dataset.labels[self.rows], dtype=np.float32)).to(device)
        self.resident = self._copy_to_device() if device.type == "cuda" else None
        self._host_buffers: list[np.ndarray] = []
        self._copied: list = []  # CUDA events: when each pinned buffer's upload finished

    def _copy_to_device(self) -> torch.Tensor | None:
        needed = len(self.units) * self.dataset.hidden_dim * 4
        free, _ = torch.cuda.mem_get_info(self.device)
        if needed > 0.6 * free:
            return None
        resident = torch.empty((len(self.units), self.dataset.hidden_dim), dtype=torch.float32, device=self.device)
        staging = np.empty((min(8192, len(self.units)), self.dataset.hidden_dim), dtype=np.float32)
        for start in range(0, len(self.units), len(staging)):
            block = gather_rows(self.dataset.states, self.units[start : start + len(staging)], staging)
            part = resident[start : start + len(block)]
            part.copy_(torch.from_numpy(block))
            part.sub_(self.mean).div_(self.std)
        return resident

    def __len__(self) -> int:
        """Training steps per epoch."""
        return len(self.rows)

    def plan(self, seed: int, epoch: int) -> EpochPlan:
        """The epoch's batches, fixed by ``(seed, epoch)``.

        A state joins the batch in which its first step falls when the permuted states' steps are
        laid end to end, so batches hold ``batch_size`` steps on average and at most
        ``batch_size`` states; with one step per state this is a permutation cut every
        ``batch_size`` rows.
        """
        order = np.random.default_rng([seed, epoch]).permutation(len(self.units))
        counts = self.counts[order]
        batch_of = (np.cumsum(counts) - counts) // self.batch_size
        units = order[np.lexsort((order, batch_of))]  # batches in order, each one's states ascending
        unit_bounds = np.concatenate([[0], np.flatnonzero(np.diff(batch_of)) + 1, [len(order)]]) if len(order) else np.zeros(1, np.int64)
        lengths = self.counts[units]
        ends = np.cumsum(lengths)
        within = np.arange(int(ends[-1]) if len(ends) else 0) - np.repeat(ends - lengths, lengths)
        steps = self.unit_steps[np.repeat(self.unit_first[units], lengths) + within]
        step_bounds = np.concatenate([[0], ends[unit_bounds[1:] - 1]]) if len(units) else np.zeros(1, np.int64)
        local = np.arange(len(units)) - np.repeat(unit_bounds[:-1], np.diff(unit_bounds))
        return EpochPlan(units, unit_bounds, steps, step_bounds, np.repeat(local, lengths))

    def positions(self, seed: int, epoch: int) -> np.ndarray:
        """Positions (into ``rows``) of the epoch's steps, batch after batch."""
        return self.plan(seed, epoch).steps

    def epoch(self, seed: int, epoch: int, plan: EpochPlan | None = None):
        """Yield ``(hidden, target, inverse)`` batches in the order fixed by ``(seed, epoch)``."""
        plan = plan or self.plan(seed, epoch)
        to_device = (lambda a: torch.from_numpy(a).to(self.device)) if self.device.type != "cpu" else torch.from_numpy
        steps, inverse = to_device(plan.steps), to_device(plan.inverse)
        units = to_device(plan.units) if self.resident is not None else None
        cuda = self.device.type == "cuda"
        for number in range(len(plan)):
            u0, u1 = int(plan.unit_bounds[number]), int(plan.unit_bounds[number + 1])
            s0, s1 = int(plan.step_bounds[number]), int(plan.step_bounds[number + 1])
            target = self.labels.index_select(0, steps[s0:s1])
            mapping = None if u1 - u0 == s1 - s0 else inverse[s0:s1]
            if self.resident is not None:
                yield self.resident.index_select(0, units[u0:u1]), target, mapping
                continue
            slot = number % 2 if cuda else 0  # two pinned buffers: gather one while the other uploads
            if cuda and self._copied[slot] is not None:
                self._copied[slot].synchronize()  # the last upload from this buffer has finished
            hidden = torch.from_numpy(gather_rows(self.dataset.states, self.units[plan.units[u0:u1]], self._host_buffer(slot)))
            if self.device.type != "cpu":
                hidden = hidden.to(self.device, non_blocking=cuda)
                if cuda:
                    self._copied[slot] = torch.cuda.Event()
                    self._copied[slot].record()
            hidden.sub_(self.mean).div_(self.std)
            yield hidden, target, mapping

    def _host_buffer(self, slot: int) -> np.ndarray:
        """The reused gather buffer ``slot`` (in pinned memory for CUDA), made on first use."""
        while len(self._host_buffers) <= slot:
            buffer = torch.empty((min(self.batch_size, max(len(self.units), 1)), self.dataset.hidden_dim), dtype=torch.float32)
            self._host_buffers.append((buffer.pin_memory() if self.device.type == "cuda" else buffer).numpy())
            self._copied.append(None)
        return self._host_buffers[slot]


class MixedBatchStream:
    """Every source's batches of an epoch, interleaved in a seeded random order."""

    def __init__(self, streams: list[BatchStream]) -> None:
        self.streams = streams

    def __len__(self) -> int:
        return sum(len(stream) for stream in self.streams)

    def epoch(self, seed: int, epoch: int):
        """Yield ``(source_index, hidden, target, inverse)`` in the order fixed by ``(seed, epoch)``."""
        plans = [stream.plan(seed, epoch) for stream in self.streams]
        counts = [len(plan) for plan in plans]
        schedule = np.random.default_rng([seed, epoch]).permutation(np.repeat(np.arange(len(counts)), counts))
        batches = [stream.epoch(seed, epoch, plan) for stream, plan in zip(self.streams, plans, strict=True)]
        for index in schedule:
            hidden, target, inverse = next(batches[index])
            yield int(index), hidden, target, inverse
