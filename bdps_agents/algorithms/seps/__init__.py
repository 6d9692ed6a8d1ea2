"""SePS, selective parameter sharing (Christianos et al., ICML 2021), on the QMIX learner: a VAE
pre-trained on the agents' transitions encodes each agent id; k-means on the latent means
groups the agents once; then one agent network per group, full sharing inside a group and none
across. The reference (uoe-agents/seps) trains A2C; this is the QMIX-based variant the BDPS
paper compares with (docs/methods/seps.md).

Here: ``clustering`` (k-means++, Davies–Bouldin), ``vae``, ``policy`` (acting by the fixed
assignment), ``learner`` (pre-training and the clustering inside the updates), ``build`` and
``presets``.
"""

from __future__ import annotations

from pydantic import Field

from bdps_agents.algorithms import AlgorithmOptions, AlgorithmSpec


class SEPSOptions(AlgorithmOptions):
    """SePS's section (``seps:``): pre-training length, number of clusters, the VAE."""

    # 50k: inside the 70k-step ε anneal of the SMAX presets, so the VAE sees mostly exploratory
    # play (the reference pre-trains on ~200k steps of random play), and a 300k-step budget
    # keeps 5/6 of its steps for the clustered phase
    pretrain_steps: int = Field(
        50_000,
        ge=0,
        description="env steps of pre-training (the VAE trains, every agent uses network 0) "
        "before the agents are clustered; converted to ceil(pretrain_steps / "
        "training.steps_per_update) updates. 0 clusters an untrained encoder (a random grouping)",
    )
    n_clusters: int | None = Field(
        None,
        ge=1,
        description="k, the number of agent networks after clustering; None: chosen by the "
        "Davies-Bouldin index over k = 2..min(n_agents - 1, max_clusters) (k = 1, full "
        "sharing, when n_agents <= 2)",
    )
    max_clusters: int | None = Field(
        None,
        ge=2,
        description="the largest k the Davies-Bouldin choice tries, and so the number of stacked "
        "networks allocated (None: n_agents - 1, as the reference). Each update's agent network "
        "costs up to this many times a shared one; bound it for many agents",
    )
    latent_dim: int = Field(10, ge=1, description="VAE latent size")
    encoder_hidden: int = Field(64, ge=1, description="VAE encoder hidden layer (one)")
    decoder_hidden: int = Field(64, ge=1, description="VAE decoder hidden layers (two)")
    kl_weight: float = Field(1e-4, ge=0.0, description="weight of the KL term in the VAE loss")
    vae_loss_weight: float = Field(
        1.0, ge=0.0, description="weight of the VAE loss in the total loss while pre-training"
    )
    vae_max_tuples: int | None = Field(
        4096,
        ge=1,
        description="at most this many (agent, obs, act, rew, next obs) tuples of the replayed "
        "batch per update train the VAE, drawn uniformly; None: all",
    )

    def check_env(
        self, n_agents: int, episode_limit: int | None, n_actions: int | None = None
    ) -> None:
        if self.n_clusters is not None and self.n_clusters > n_agents:
            raise ValueError(
                f"seps.n_clusters (k={self.n_clusters}) exceeds the number of agents "
                f"(n={n_agents}): set it to at most {n_agents}, or leave it unset to choose k "
                "by the Davies-Bouldin index"
            )

    def n_networks(self, n_agents: int) -> int:
        """G, the stacked agent networks: k if given, else the largest k the Davies-Bouldin
        choice tries (1 when there is none to try: n_agents <= 2)."""
        if self.n_clusters is not None:
            return self.n_clusters
        return max(1, min(n_agents - 1, self.max_clusters or n_agents))


SPEC = AlgorithmSpec(
    name="seps",
    summary="SePS: agents grouped once by a pre-trained VAE of their transitions (k-means), "
    "one QMIX agent network per group",
    options=SEPSOptions,
    build="bdps_agents.algorithms.seps.build:build_seps",
    # one network per cluster, agents assigned by the method (here once, not dynamically)
    sharing=("roles",),
    summary_metrics=("seps_k", "seps_db"),
    presets="bdps_agents.algorithms.seps.presets",
)
