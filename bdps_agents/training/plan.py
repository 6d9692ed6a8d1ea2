"""How a budget of env steps is cut into collect steps and epochs."""

from __future__ import annotations

from dataclasses import dataclass


def collect_step(steps_per_update: int, n_envs: int) -> int:
    """Env steps per collect step (one gradient step each): ``steps_per_update`` rounded up to
    a multiple of the env count, since every env steps at once."""
    return -(-steps_per_update // n_envs) * n_envs


@dataclass(frozen=True)
class EpochPlan:
    """How a budget of ``training.total_steps`` trainer env steps is cut into epochs (an epoch
    ends with a test and maybe a checkpoint). Tianshou runs whole epochs of whole collect steps,
    so the budget is met from above by less than one collect step per epoch: the
    remaining steps are split into ``ceil(remaining / test_interval)`` equal epochs of a whole
    number of collect steps. ``total`` is the exact count the trainer will reach."""

    max_epochs: int  # Tianshou's max_epochs (epochs done before a resume included)
    epoch_steps: int
    epochs_left: int
    total: int  # trainer env steps at the end (warm-up excluded)

    @classmethod
    def of(
        cls,
        total_steps: int,
        test_interval: int,
        steps_per_collect: int,
        done_steps: int = 0,
        done_epochs: int = 0,
    ) -> EpochPlan:
        remaining = total_steps - done_steps
        if remaining <= 0:
            return cls(done_epochs, steps_per_collect, 0, done_steps)
        epochs = -(-remaining // test_interval)
        per_epoch = -(-remaining // epochs)
        epoch_steps = -(-per_epoch // steps_per_collect) * steps_per_collect
        return cls(done_epochs + epochs, epoch_steps, epochs, done_steps + epochs * epoch_steps)

    def describe(self, total_steps: int, steps_per_update: int) -> str:
        rounded = (
            ""
            if self.total == total_steps
            else f" (training.total_steps {total_steps:,} rounded up to whole collect steps)"
        )
        return (
            f"budget: {self.total:,} env steps of training{rounded}: {self.epochs_left} "
            f"epoch(s) of {self.epoch_steps:,} steps, each ending with a test; one gradient "
            f"step per {steps_per_update:,} steps (rounded up to whole vector steps)"
        )
