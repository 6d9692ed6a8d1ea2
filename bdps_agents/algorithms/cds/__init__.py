"""CDS (Li et al., NeurIPS 2021, "Celebrating Diversity in Shared Multi-Agent Reinforcement
Learning") on the value-decomposition learner: a shared agent network plus one small linear Q
head per agent (kept small by an L1 penalty), and an intrinsic reward for identity-dependent
behaviour: how much better an agent's next observation is predicted knowing its id, plus the
divergence of its Boltzmann policy from the team's mean one. docs/methods/cds.md maps each
piece to its code.

Here: the ``cds:`` section (:class:`CDSOptions`), ``policy`` (acting), ``learner`` (the
intrinsic reward, the predictors' training, the L1 loss), ``build`` and ``presets`` (the
reference's per-map β1, β2, β)."""

from __future__ import annotations

from pydantic import Field, field_validator

from bdps_agents.algorithms import AlgorithmOptions, AlgorithmSpec
from bdps_agents.config import known_mixer


class CDSOptions(AlgorithmOptions):
    """CDS's section (``cds:``). Defaults: the reference's SMAC settings for maps it gives none
    for (β1 2, β2 1, β 0.1 as on 6h_vs_8z; the presets hold the per-map values)."""

    beta1: float = Field(
        2.0,
        ge=0.0,
        description="β1: weight of the observation term β1·(log q − log p); also the scale c "
        "of the Boltzmann policies softmax(c·Q) of the KL term unless kl_scale is set (the "
        "reference uses β1 for both)",
    )
    beta2: float = Field(1.0, ge=0.0, description="β2: weight of the KL term")
    beta: float = Field(
        0.1,
        ge=0.0,
        description="β: weight of the intrinsic reward in the TD target, y = r + β·r_int + "
        "γ(1 − d)·Q̄_tot",
    )
    kl_scale: float | None = Field(
        None, gt=0.0, description="c of softmax(c·Q) in the KL term; None: beta1"
    )
    l1_weight: float = Field(
        0.1,
        ge=0.0,
        description="weight of the L1 penalty mean |Q_local| on the per-agent heads' Q-values "
        "(the reference: 0.1)",
    )
    predictor_hidden: int = Field(
        128, ge=1, description="hidden width of the two next-observation predictors (3 layers)"
    )
    predictor_lr: float = Field(
        3e-4, gt=0.0, description="learning rate of the predictors' own Adam optimisers"
    )
    predictor_grad_clip: float | None = Field(
        1.0, gt=0.0, description="gradient-norm clip of each predictor's step (None: none)"
    )
    predictor_minibatch: int = Field(
        256, ge=1, description="agent-steps per predictor minibatch (the reference: 256)"
    )
    predictor_epochs: int = Field(
        1,
        ge=1,
        description="passes over the replayed batch's valid agent-steps per update (the "
        "reference: 1 on SMAC, 25 on GRF)",
    )
    predictor_max_steps: int | None = Field(
        None,
        ge=1,
        description="at most this many predictor minibatch steps per update (None: every "
        "minibatch of every epoch, as the reference); bounds the cost with many agents",
    )
    anneal_start_steps: int | None = Field(
        None,
        ge=0,
        description="env steps after which r_int is annealed linearly to 0 over anneal_steps "
        "(the reference on corridor: after 1M); None: never. Counted as gradient steps: "
        "ceil(steps / training.steps_per_update)",
    )
    anneal_steps: int = Field(
        1_000_000, ge=1, description="env steps over which the annealed r_int falls to 0"
    )
    mixer: str | None = Field(
        None,
        min_length=1,
        description="the mixer when algorithm.mixer is unset (None: qplex, the reference's "
        "SMAC mixer; the GRF presets set qmix, as the reference)",
    )
    agent_id_input: bool | None = Field(
        None,
        description="whether the agent network reads the one-hot agent id (None: "
        "network.agent_id_input). The reference reads none (the local heads carry the "
        "identity); its SMAC/SMAX/GRF presets set false",
    )
    reference_intrinsic: bool = Field(
        False,
        description="compute r_int as the reference code does: β1·log q − log p (not "
        "β1·(log q − log p)) and KL(softmax(c·Q_i) ‖ mean_j softmax(Q_j)) over all actions; "
        "both non-zero for identical agents unless β1 = c = 1 (docs/methods/cds.md)",
    )

    @field_validator("mixer")
    @classmethod
    def _known_mixer(cls, name: str | None) -> str | None:
        return known_mixer(name)


SPEC = AlgorithmSpec(
    name="cds",
    summary="CDS: shared agent plus small per-agent Q heads (L1); intrinsic reward for "
    "identity-dependent observations and policies",
    options=CDSOptions,
    build="bdps_agents.algorithms.cds.build:build_cds",
    sharing=("full",),  # one shared network; the identity lives in the local heads
    summary_metrics=("cds_intrinsic", "cds_reward_abs", "cds_obs_term", "cds_kl_term"),
    presets="bdps_agents.algorithms.cds.presets",
    default_mixer="qplex",
)
