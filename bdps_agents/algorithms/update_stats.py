"""What one update of :class:`~bdps_agents.algorithms.value_decomposition.ValueDecomposition`
passes between its hooks and reports: the agents' Q-values of an unroll, a method's auxiliary
losses, the update's statistics, and the error for a non-finite loss."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import torch
from tianshou.algorithm.algorithm_base import TrainingStats

__all__ = ["AgentQ", "AuxiliaryLoss", "NonFiniteError", "ValueDecompositionStats"]


class NonFiniteError(FloatingPointError):
    """A loss or Q-value became NaN or infinite during an update."""


@dataclass(kw_only=True)
class ValueDecompositionStats(TrainingStats):
    """One update's statistics. A method's own values (auxiliary losses, diagnostics) are
    fields of its subclass (``stats_class``) where it declares them, else entries of the dict
    field named by ``overflow``; Tianshou's loggers write both (a dict as ``<field>/<key>``)."""

    overflow: ClassVar[str] = "extras"

    loss: float | None = None  # the total loss: L_TD + Σ w·(auxiliary loss)
    td_loss: float | None = None
    q_taken_mean: float | None = None
    target_mean: float | None = None
    grad_norm: float | None = None
    extras: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, values: dict[str, float], **core: Any) -> ValueDecompositionStats:
        """``core`` fields plus ``values``, each in its field or, undeclared, in ``overflow``."""
        declared = {f.name for f in fields(cls)} - {cls.overflow}
        own = {key: value for key, value in values.items() if key in declared}
        rest = {key: value for key, value in values.items() if key not in declared}
        kwargs: dict[str, Any] = {**core, **own, cls.overflow: rest}
        return cls(**kwargs)

    def _get_self_dict(self) -> dict[str, Any]:
        dicts = [name for name, value in self.__dict__.items() if isinstance(value, dict)]
        own = {k: v for k, v in self.__dict__.items() if k not in dicts}
        for name in dicts:
            own.update(self.__dict__[name])
        return own


@dataclass
class AgentQ:
    """What ``agent_q_values`` returns: per-agent Q-values ``(B, T+1, n, A)`` and any tensors
    of the same unroll that a method's auxiliary losses or diagnostics read."""

    q: torch.Tensor
    extras: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class AuxiliaryLoss:
    """An extra loss of a method, added to L_TD as ``weight * value``.

    :param name: its key in the update statistics (``role_loss``).
    :param label: how a non-finite value is reported (``VAE loss (role selector, Eq. 7)``).
    :param stats: further statistics of its computation, logged with the update's.
    """

    name: str
    label: str
    value: torch.Tensor
    weight: float = 1.0
    stats: dict[str, float] = field(default_factory=dict)
