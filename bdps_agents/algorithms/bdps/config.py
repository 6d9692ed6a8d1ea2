"""BDPS's config section and the paper's size constraints (Def. 1); imports no torch."""

from __future__ import annotations

import warnings
from typing import Literal

from pydantic import Field, model_validator

from bdps_agents.algorithms import AlgorithmOptions


class BDPSConfig(AlgorithmOptions):
    """BDPS's section (``bdps:``): levels, role and group selectors (paper Sec. 3).

    ``n_roles`` = k, ``n_groups`` = m, ``role_interval`` = T_U, ``group_interval`` T_V = e * T_U
    with ``e = group_interval_multiple``. Paper constraint: n >= k >= m >= 2 (n is checked when
    the environment is built), T_U and T_V below the episode limit.
    """

    levels: Literal[1, 2] = Field(
        2,
        description="2: roles and groups (bi-level BDPS); 1: roles only (the paper's "
        "single-level ablation, no group selector)",
    )
    n_roles: int = Field(2, ge=2, description="k virtual roles")
    n_groups: int = Field(2, ge=2, description="m groups")
    role_interval: int = Field(5, ge=1, description="T_U: env steps between role updates")
    group_interval_multiple: int = Field(1, ge=1, description="e in T_V = e * T_U")
    # chosen by a sweep on standardised windows (docs/results/roles-and-groups.md); the old 1e-4
    # only hid a scale problem of raw windows
    kl_weight: float = Field(0.01, ge=0.0, description="lambda in Eq. 7")
    standardize_advantages: bool = Field(
        True,
        description="feed the role selector's VAE advantage windows standardised by a running "
        "mean and std of their elements (kept in checkpoints); false = raw advantages",
    )
    # the names of bdps.GROUP_INPUTS (not imported: the config stays free of torch)
    group_selector_input: Literal["roles", "roles+id", "roles+trajectory"] = Field(
        "roles",
        description="what the group selector reads per agent: its one-hot role (paper Sec. "
        "3.2.1); the role and its one-hot agent id; or the role and its role network's hidden "
        "state h^U (Eq. 8's tau). Only the last two let agents with equal roles take different "
        "groups (docs/results/roles-and-groups.md)",
    )
    # variants that make the choices matter (docs/algorithm.md, "Do the choices matter?");
    # the defaults are the paper's mechanism
    group_choice: Literal["argmax", "partition"] = Field(
        "argmax",
        description="argmax: each agent takes its best group, epsilon-greedy (the paper); "
        "partition: the assignment in which every group holds an alive agent that maximises "
        "the summed group values (exact), explored with random partitions, and L_V's target "
        "takes the best partition too",
    )
    role_switch_margin: float = Field(
        0.0,
        ge=0.0,
        description="an agent keeps its role unless another role's latent z exceeds its "
        "current role's by more than this (0: argmax z, the paper's Eq. 3; > 0: roles persist)",
    )
    sample_roles_at_test: bool = Field(
        False,
        description="sample the role latent z in test episodes too; false = z = mu there, so "
        "evaluation is deterministic",
    )
    role_loss_weight: float = Field(1.0, ge=0.0, description="weight of L_U in the total loss")
    group_loss_weight: float = Field(1.0, ge=0.0, description="weight of L_V in the total loss")
    role_gru_dim: int = Field(64, ge=1)
    vae_hidden_dim: int = Field(64, ge=1)
    group_embed_dim: int = Field(64, ge=1)
    gat_dim: int = Field(128, ge=1, description="GAT output (App. F: 128)")
    group_gru_dim: int = Field(64, ge=1, description="group selector GRU (App. F: 64)")

    @property
    def group_interval(self) -> int:
        return self.role_interval * self.group_interval_multiple

    @property
    def bilevel(self) -> bool:
        return self.levels == 2

    def label_suffix(self) -> str | None:
        return None if self.bilevel else "individual"

    def check_env(
        self, n_agents: int, episode_limit: int | None, n_actions: int | None = None
    ) -> None:
        """Def. 1 against the environment's sizes (single level: no groups to check)."""
        check_sharing_sizes(
            n_agents=n_agents,
            n_roles=self.n_roles,
            n_groups=self.n_groups if self.bilevel else None,
            role_interval=self.role_interval,
            group_interval=self.group_interval if self.bilevel else None,
            episode_limit=episode_limit,
            names={
                "n_roles": "bdps.n_roles",
                "n_groups": "bdps.n_groups",
                "role_interval": "bdps.role_interval (T_U)",
                "group_interval": "group interval T_V = bdps.role_interval * "
                "bdps.group_interval_multiple",
            },
            warn_unknown_limit=False,  # BDPSPolicy, built next, states it
        )

    @model_validator(mode="after")
    def _roles_cover_groups(self) -> BDPSConfig:
        if self.n_roles < self.n_groups:
            raise ValueError(
                f"bdps.n_roles (k={self.n_roles}) must be >= bdps.n_groups (m={self.n_groups}): "
                "the paper requires n >= k >= m >= 2"
            )
        return self


def check_sharing_sizes(
    *,
    n_agents: int,
    n_roles: int,
    n_groups: int | None,
    role_interval: int,
    group_interval: int | None,
    episode_limit: int | None,
    names: dict[str, str] | None = None,
    warn_unknown_limit: bool = True,
) -> None:
    """BDPS's Def. 1: n >= k >= m >= 2, and T_U, T_V below the episode length (else no
    decision after t = 0 ever falls inside an episode and the selectors never learn).

    ``n_groups``/``group_interval`` are None in single-level mode. Raises ``ValueError`` naming
    each size as ``names`` spells it (default: the keyword's name). An unknown episode length
    is stated in a ``UserWarning`` (``warn_unknown_limit``), not skipped silently."""
    keys = ("n_roles", "n_groups", "role_interval", "group_interval")
    names = {**{key: key for key in keys}, **(names or {})}
    k_name, m_name = names["n_roles"], names["n_groups"]
    if n_roles < 2:
        raise ValueError(
            f"{k_name} (k={n_roles}) must be >= 2: the paper requires n >= k >= m >= 2"
        )
    if n_agents < n_roles:
        raise ValueError(
            f"{k_name} (k={n_roles}) exceeds the number of agents (n={n_agents}): "
            "the paper requires n >= k >= m >= 2"
        )
    if n_groups is not None:
        if n_groups < 2:
            raise ValueError(
                f"{m_name} (m={n_groups}) must be >= 2: the paper requires n >= k >= m >= 2"
            )
        if n_groups > n_roles:
            raise ValueError(
                f"{m_name} (m={n_groups}) exceeds {k_name} (k={n_roles}): "
                "the paper requires n >= k >= m >= 2"
            )
    intervals = [("role_interval", role_interval)]
    if group_interval is not None:
        intervals.append(("group_interval", group_interval))
    for key, value in intervals:
        if value < 1:
            raise ValueError(f"{names[key]} = {value} must be >= 1")
    if episode_limit is None:
        if not warn_unknown_limit:
            return
        warnings.warn(
            "the episode length is unknown, so "
            + " and ".join(f"{names[key]} = {value}" for key, value in intervals)
            + " cannot be checked against it (they must be below it, or the selectors never "
            "decide inside an episode): give JointEnv(..., episode_limit=N)",
            UserWarning,
            stacklevel=3,
        )
        return
    for key, value in intervals:
        if value >= episode_limit:
            raise ValueError(
                f"{names[key]} = {value} must be below the episode limit ({episode_limit})"
            )
