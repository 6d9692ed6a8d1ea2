"""EOI (Jiang & Lu, ICML 2021, "The Emergence of Individuality"), the maintained PyMARL version
(jiechuanjiang/eoi_pymarl): plain QMIX agents whose exploration is nudged toward individuality.
A classifier P_φ(i | o) learns which agent sees an observation; an intrinsic value function
Q^p([o_i, one-hot i], a) learns the discounted sum of r_i = scale · P_φ(i | o_i); in a share of
the training episodes, now and then one agent's action is replaced by argmax Q^p over its
available actions. docs/methods/eoi.md maps each piece to its code.

Here: the ``eoi:`` section (:class:`EOIOptions`), ``intrinsic`` (the classifier, Q^p and their
training), ``policy`` (acting), ``learner``, ``build`` and ``presets`` (settings per scenario).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from bdps_agents.algorithms import AlgorithmOptions, AlgorithmSpec


class EOIOptions(AlgorithmOptions):
    """EOI's section (``eoi:``). Defaults: the reference's PyMARL settings."""

    episode_prob: float = Field(
        0.4,
        ge=0.0,
        le=1.0,
        description="probability that a training episode is EOI-enabled (drawn per env at the "
        "start of each episode); test episodes never are",
    )
    explore_ratio: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="in an EOI-enabled episode, the probability per step that one agent, drawn "
        "uniformly, takes argmax Q^p over its available actions instead of its QMIX action "
        "(reference presets: 0.2 on 2c_vs_64zg and 5m_vs_6m, 0.8 on 3s_vs_5z)",
    )
    reward_scale: float = Field(
        10.0, ge=0.0, description="intrinsic reward r_i = reward_scale * P_phi(i | o_i)"
    )
    reward_obs: Literal["current", "next"] = Field(
        "current",
        description="which observation of a transition (o_t, a_t, o_t+1) the intrinsic reward "
        "reads: 'current' (o_t, the reference) or 'next' (o_t+1)",
    )
    hidden_dim: int = Field(
        64, ge=1, description="width of the two hidden layers of the classifier and of Q^p"
    )
    entropy_weight: float = Field(
        0.1,
        ge=0.0,
        description="weight of the classifier's entropy in its loss (cross-entropy + w * H(P_phi)"
        "): sharpens its predictions",
    )
    classifier_lr: float = Field(1e-4, gt=0.0, description="Adam learning rate of the classifier")
    intrinsic_gamma: float = Field(
        0.92, gt=0.0, le=1.0, description="discount of the intrinsic value function Q^p"
    )
    intrinsic_lr: float = Field(1e-4, gt=0.0, description="Adam learning rate of Q^p")
    target_tau: float = Field(
        0.005,
        gt=0.0,
        le=1.0,
        description="soft target update of Q^p after each of its steps: target <- (1 - "
        "target_tau) * target + target_tau * online, i.e. the target moves this fraction of the "
        "way to the online net (1: a copy). The reference's tau = 0.995 is the weight it keeps "
        "on the target, i.e. target_tau = 0.005 here (its code adds 0.995 * online instead of "
        "0.005 * online: a bug, not reproduced)",
    )
    minibatch: int = Field(
        256,
        ge=1,
        description="the classifier and Q^p train on the replayed batch's (agent, step) tuples, "
        "shuffled, in minibatches of this size: one step of each per minibatch",
    )
    max_minibatches: int | None = Field(
        None,
        ge=1,
        description="at most this many of those minibatches per update (None: all, as the "
        "reference); bounds the cost on large batches",
    )


SPEC = AlgorithmSpec(
    name="eoi",
    summary="EOI: QMIX agents exploring with an intrinsic value of individuality (a classifier "
    "of agent identity from observations)",
    options=EOIOptions,
    build="bdps_agents.algorithms.eoi.build:build_eoi",
    summary_metrics=("eoi_accuracy", "eoi_replaced_share"),
    presets="bdps_agents.algorithms.eoi.presets",
)
