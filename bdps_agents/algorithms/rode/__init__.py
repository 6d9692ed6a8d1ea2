"""RODE (Wang et al., ICLR 2021, "RODE: Learning Roles to Decompose Multi-Agent Tasks") on the
value-decomposition learner: actions are embedded by their effects, k-means of the embeddings
gives each role a restricted action space, a role selector trained as an extra RL task on
interval reward sums picks each agent's role every few steps, and role policies choose among
their role's actions. docs/methods/rode.md maps each piece to its code.

Here: the ``rode:`` section (:class:`RODEOptions`), ``policy`` (acting), ``learner`` (the
losses added to the shared learner), ``build`` and ``presets`` (settings per scenario)."""

from __future__ import annotations

from pydantic import Field

from bdps_agents.algorithms import AlgorithmOptions, AlgorithmSpec


class RODEOptions(AlgorithmOptions):
    """RODE's section (``rode:``). Defaults: the reference's SMAC settings (role interval 5,
    action embeddings of 20, k-means at 50k env steps, role ε annealed over 70k steps after it)."""

    n_roles: int = Field(3, ge=1, description="k roles = k-means clusters of the actions")
    role_interval: int = Field(5, ge=1, description="env steps between role choices")
    action_embed_dim: int = Field(20, ge=1, description="d of the action and role embeddings")
    repr_hidden_dim: int = Field(
        32, ge=1, description="hidden width of the action encoder and the forward model"
    )
    start_steps: int = Field(
        50_000,
        ge=0,
        description="env steps of training (after warm-up) during which the action "
        "representations learn; then k-means fixes the role action spaces once. Counted as "
        "gradient steps: ceil(start_steps / training.steps_per_update), so a script that "
        "updates at another ratio sets training.steps_per_update to its own; at least "
        "training.total_steps is warned of (the roles would never form)",
    )
    noop_action: int | None = Field(
        0, ge=0, description="the action every role includes (no-op in SMAC/SMAX/LBF); null: none"
    )
    move_actions: list[int] = Field(
        default_factory=list,
        description="actions added to every role holding >= move_threshold actions besides them "
        "and the no-op (the reference gives attack roles the moves: SMAC/SMAX [1, 2, 3, 4, 5])",
    )
    move_threshold: int = Field(
        3,
        ge=1,
        description="see move_actions (the reference: 3; LBF presets: 1, so that the "
        "loading role can also move)",
    )
    role_eps_anneal_steps: int = Field(
        70_000,
        ge=0,
        description="env steps over which the role ε falls from 1 to "
        "exploration.eps_end again after the k-means (before it, roles use the action ε)",
    )
    reward_loss_weight: float = Field(
        10.0, ge=0.0, description="weight of the reward MSE in the forward model's loss"
    )
    repr_loss_weight: float = Field(
        1.0, ge=0.0, description="weight of the action representation loss in the total loss"
    )
    role_loss_weight: float = Field(
        1.0, ge=0.0, description="weight of the role selector's TD loss in the total loss"
    )

    def label_suffix(self) -> str | None:
        return "no-repr" if self.start_steps == 0 else None

    def check_env(
        self, n_agents: int, episode_limit: int | None, n_actions: int | None = None
    ) -> None:
        if n_actions is None:
            return
        for key, actions in (
            ("noop_action", [self.noop_action]),
            ("move_actions", self.move_actions),
        ):
            bad = [a for a in actions if a is not None and not 0 <= a < n_actions]
            if bad:
                raise ValueError(
                    f"rode.{key} names actions {bad}, but this environment's actions are "
                    f"0..{n_actions - 1}: set rode.{key} to actions of it"
                )
        if self.n_roles > n_actions:
            raise ValueError(
                f"rode.n_roles ({self.n_roles}) exceeds the environment's {n_actions} actions "
                f"(k-means clusters the actions): set rode.n_roles to at most {n_actions}"
            )


SPEC = AlgorithmSpec(
    name="rode",
    summary="RODE: roles with action spaces from k-means of action effects; a role selector "
    "trained on interval returns",
    options=RODEOptions,
    build="bdps_agents.algorithms.rode.build:build_rode",
    sharing=("roles",),
    summary_metrics=("roles_per_env", "role_switch_rate"),
    # an ablation, and the contract tests' run through the k-means: role action spaces from
    # action embeddings after one gradient step, i.e. (nearly) untrained ones
    variants={"no-repr": {"rode.start_steps": 0}},
    presets="bdps_agents.algorithms.rode.presets",
)
