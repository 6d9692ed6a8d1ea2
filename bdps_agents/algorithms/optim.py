"""The value-decomposition learners' optimiser: PyTorch's fused Adam, wrapped so that a step also
returns the gradient norm measured before clipping."""

from __future__ import annotations

from typing import Any

import torch
from tianshou.algorithm.algorithm_base import Algorithm
from tianshou.algorithm.optim import AdamOptimizerFactory
from torch import nn

from bdps_agents.settings import fast_paths_enabled


class FusedAdamOptimizerFactory(AdamOptimizerFactory):
    """Tianshou's Adam factory with PyTorch's fused implementation (``fused=True``): the same
    update rule as one kernel over all parameters instead of a dozen operations per parameter
    (benchmarks/README.md). With the fast paths off (``bdps_agents.settings``), PyTorch's
    default Adam."""

    def _create_optimizer_for_params(self, params: Any) -> torch.optim.Optimizer:
        return torch.optim.Adam(
            params,
            lr=self.lr,
            betas=self.betas,
            eps=self.eps,
            weight_decay=self.weight_decay,
            fused=fast_paths_enabled(),
        )


class GradNormOptimizer(Algorithm.Optimizer):
    """Tianshou's optimiser wrapper, also returning the gradient norm measured before clipping."""

    def step(self, loss: torch.Tensor, retain_graph=None, create_graph=False) -> float:  # type: ignore[override]
        self._optim.zero_grad()
        loss.backward(retain_graph=retain_graph, create_graph=create_graph)
        limit = self._max_grad_norm if self._max_grad_norm is not None else float("inf")
        norm = nn.utils.clip_grad_norm_(self._module.parameters(), max_norm=limit)
        self._optim.step()
        return float(norm)
