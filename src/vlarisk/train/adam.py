"""Adam on torch's fused kernel, outside ``torch.optim``: the same steps, without torch's compiler stack.

Every ``torch.optim`` optimiser imports ``torch._dynamo`` (and with it much of ``torch._inductor``)
in its constructor and on every step, fused, foreach or plain alike: about 1.5 s of a training
command's start-up (``benchmarks/startup.py``). :class:`FusedAdam` calls the kernel that
``torch.optim.Adam(fused=True)`` calls, with the same arguments, so its steps are bit-identical,
and keeps its state in the same ``state_dict`` layout, so a checkpoint of either resumes in either.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

FUSED_DEVICES = ("cpu", "cuda")  # where torch has the fused Adam kernel


class FusedAdam:
    """Adam (L2 weight decay, as ``torch.optim.Adam``) over one group of parameters on a device of
    :data:`FUSED_DEVICES`. A parameter without a gradient is left alone, and gets its state at its
    first gradient (a multi-source model's other heads, as in ``torch.optim``)."""

    def __init__(
        self,
        parameters: Iterable[torch.nn.Parameter],
        *,
        lr: float,
        weight_decay: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params = list(parameters)
        self.hyper = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
        self.state: dict[int, dict[str, torch.Tensor]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for param in self.params:
            if set_to_none:
                param.grad = None
            elif param.grad is not None:
                param.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        indices = [index for index, param in enumerate(self.params) if param.grad is not None]
        for index in indices:
            if index not in self.state:
                param = self.params[index]
                self.state[index] = {
                    "step": torch.zeros((), dtype=torch.float32, device=param.device),
                    "exp_avg": torch.zeros_like(param, memory_format=torch.preserve_format),
                    "exp_avg_sq": torch.zeros_like(param, memory_format=torch.preserve_format),
                }
        if not indices:
            return
        states = [self.state[index] for index in indices]
        steps = [state["step"] for state in states]
        torch._foreach_add_(steps, 1)
        beta1, beta2 = self.hyper["betas"]
        torch._fused_adam_(
            [self.params[index] for index in indices],
            [self.params[index].grad for index in indices],
            [state["exp_avg"] for state in states],
            [state["exp_avg_sq"] for state in states],
            [],
            steps,
            amsgrad=False,
            lr=self.hyper["lr"],
            beta1=beta1,
            beta2=beta2,
            weight_decay=self.hyper["weight_decay"],
            eps=self.hyper["eps"],
            maximize=False,
        )

    def state_dict(self) -> dict:
        """The layout of ``torch.optim.Adam(fused=True).state_dict()``."""
        group = {
            **self.hyper,
            "amsgrad": False,
            "maximize": False,
            "foreach": None,
            "capturable": False,
            "differentiable": False,
            "fused": True,
            "decoupled_weight_decay": False,
            "params": list(range(len(self.params))),
        }
        return {"state": {index: dict(state) for index, state in sorted(self.state.items())}, "param_groups": [group]}

    def load_state_dict(self, state_dict: dict) -> None:
        """Continue from :meth:`state_dict` of this class or of ``torch.optim.Adam`` (any of its kernels)."""
        (group,) = state_dict["param_groups"]
        if len(group["params"]) != len(self.params):
            raise ValueError(f"the optimiser state holds {len(group['params'])} parameters, the model {len(self.params)}")
        self.hyper = {"lr": group["lr"], "betas": tuple(group["betas"]), "eps": group["eps"], "weight_decay": group["weight_decay"]}
        index_of = {saved: index for index, saved in enumerate(group["params"])}
        self.state = {}
        for saved, state in state_dict["state"].items():
            param = self.params[index_of[saved]]
            self.state[index_of[saved]] = {
                "step": torch.as_tensor(state["step"], dtype=torch.float32).to(param.device),
                "exp_avg": state["exp_avg"].to(param.device, param.dtype),
                "exp_avg_sq": state["exp_avg_sq"].to(param.device, param.dtype),
            }
