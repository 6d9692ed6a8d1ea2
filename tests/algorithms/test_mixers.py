"""The mixer registry (``algorithm.mixer``): listed without torch, every mixer builds and mixes,
a run-time one reaches the config and the builder, bad names and VDN with another mixer are one
line; run names carry the mixer; the learner hands QPLEX the actions and maxima it needs. (The
contract suite runs QMIX with each mixer: the ``qmix-qplex`` and ``qmix-vdn`` variants.)"""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from bdps_agents.algorithms import algorithm_variants, build_algorithm, mixers, run_label
from bdps_agents.algorithms.mixers import (
    BUILTIN_MIXERS,
    ENTRY_POINT_GROUP,
    available_mixers,
    build_mixer,
    register_mixer,
)
from bdps_agents.config import ConfigError, build_config
from bdps_agents.exploration import warmup
from bdps_agents.networks import QMixer, QPLEXMixer, VDNMixer
from bdps_agents.networks.mixer import mixer_action_inputs
from bdps_agents.policy import masked_argmax
from bdps_agents.registry import Registry
from bdps_agents.training import build_run

SPEC = SimpleNamespace(n_agents=3, obs_dim=4, state_dim=7, n_actions=5, episode_limit=None)


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> Registry:
    registry = Registry(
        "mixer",
        dict(BUILTIN_MIXERS),
        entry_point_group=ENTRY_POINT_GROUP,
        check=mixers._check_builder,
        load_error=mixers.MixerLoadError,
        unknown_error=mixers.UnknownMixerError,
    )
    monkeypatch.setattr(mixers, "_REGISTRY", registry)
    return registry


def test_listing_loads_no_mixer_and_no_torch() -> None:
    code = (
        "import sys, bdps_agents.algorithms.mixers as m; "
        "assert set(m.available_mixers()) >= {'qmix', 'vdn', 'qplex'}, m.available_mixers(); "
        "assert 'torch' not in sys.modules, 'torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", available_mixers())
def test_every_registered_mixer_builds_and_mixes(name: str) -> None:
    cfg = build_config({"algorithm": {"mixer": name}})
    mixer = build_mixer(cfg, SPEC)
    B, T, n, A = 2, 4, SPEC.n_agents, SPEC.n_actions
    q = torch.randn(B, T, n, A)
    act = torch.randint(0, A, (B, T, n))
    taken = q.gather(-1, act.unsqueeze(-1)).squeeze(-1)
    extra = mixer_action_inputs(mixer, q, act, torch.ones(B, T, n, A, dtype=torch.bool))
    assert mixer(taken, torch.randn(B, T, SPEC.state_dim), **extra).shape == (B, T)


def test_the_default_is_the_algorithms_own_and_an_explicit_default_changes_nothing() -> None:
    assert isinstance(build_mixer(build_config({}), SPEC), QMixer)
    assert isinstance(build_mixer(build_config({}), SPEC, default="vdn"), VDNMixer)
    qplex = build_config({"algorithm": {"mixer": "qplex", "name": "bdps"}})
    assert isinstance(build_mixer(qplex, SPEC), QPLEXMixer)
    weights = []
    for mixer in (None, "qmix"):
        torch.manual_seed(0)
        cfg = build_config({"algorithm": {"name": "qmix", "mixer": mixer}})
        weights.append(build_mixer(cfg, SPEC).state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_an_unknown_mixer_is_one_line_naming_the_known_ones() -> None:
    with pytest.raises(ConfigError) as err:
        build_config({"algorithm": {"mixer": "qmixx"}})
    assert "unknown mixer 'qmixx'; known mixers: qmix, qplex, vdn" in str(err.value)
    assert "\n" not in str(err.value)


def test_vdn_refuses_another_mixer_and_points_to_qmix() -> None:
    cfg = build_config({"algorithm": {"name": "vdn", "mixer": "qplex"}})
    with pytest.raises(ConfigError, match=r"--algo qmix --set algorithm.mixer=qplex") as err:
        build_algorithm(cfg, SPEC)
    assert "\n" not in str(err.value)
    build_config({"algorithm": {"name": "vdn", "mixer": "vdn"}})  # its own is fine


def test_a_registered_mixer_reaches_the_config_and_the_builder(fresh_registry) -> None:
    with pytest.raises(ConfigError, match="unknown mixer 'double'"):
        build_config({"algorithm": {"mixer": "double"}})

    class Double(VDNMixer):
        def forward(self, agent_qs, state, **_):
            return 2 * agent_qs.sum(-1)

    register_mixer(lambda cfg, spec: Double(spec.n_agents), name="double")
    cfg = build_config({"algorithm": {"mixer": "double"}})
    assert isinstance(build_mixer(cfg, SPEC), Double)
    assert run_label(cfg) == "qmix-double"
    with pytest.raises(ValueError, match="already registered"):
        register_mixer("x:y", name="double")


def test_run_names_carry_a_mixer_other_than_the_algorithms_default(small_lbf_config) -> None:
    for label, overrides in algorithm_variants().items():
        assert run_label(small_lbf_config(overrides)) == label
    assert "qmix-qplex" in algorithm_variants() and "qmix-vdn" in algorithm_variants()
    assert run_label(small_lbf_config({"algorithm.mixer": "qmix"})) == "qmix"
    assert run_label(small_lbf_config({"algorithm.name": "vdn", "algorithm.mixer": "vdn"})) == "vdn"
    overrides = {"algorithm.name": "bdps", "bdps.levels": 1, "algorithm.mixer": "qplex"}
    assert run_label(small_lbf_config(overrides)) == "bdps-individual-qplex"


class Spy(nn.Module):
    """Records the keyword inputs of each call of the mixer it wraps."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.needs_actions, self.calls = inner, True, []

    def forward(self, agent_qs, state, **kwargs):
        self.calls.append(kwargs)
        return self.inner(agent_qs, state, **kwargs)


def test_the_learner_gives_qplex_the_taken_and_the_double_q_actions(small_lbf_config) -> None:
    run = build_run(small_lbf_config({"algorithm.mixer": "qplex"}))
    try:
        warmup(run.train_collector, n_episode=6)
        alg = run.algorithm
        batch, indices = run.buffer.sample(4)
        batch = alg._preprocess_batch(batch, run.buffer, indices)
        with torch.no_grad():  # online and target networks now differ (as after some updates)
            for param in alg.policy.agent.parameters():
                param.add_(torch.randn_like(param))
        ep = alg.episode_tensors(batch)
        alg.mixer, alg.target_mixer = Spy(alg.mixer), Spy(alg.target_mixer)
        alg.td_loss(ep)
        with torch.no_grad():
            q, q_target = alg.agent_q_values(ep).q, alg.agent_q_values(ep, target=True).q
        mask, A = ep["mask"], q.shape[-1]
        (online,), (target,) = alg.mixer.calls, alg.target_mixer.calls
        assert torch.equal(online["actions"], F.one_hot(ep["act"], A).float())
        want = q[:, :-1].masked_fill(~mask[:, :-1], -1e9).amax(-1)
        assert not torch.equal(want, q[:, :-1].amax(-1))  # some maxima are unavailable actions
        assert torch.equal(online["max_q"], want)
        a_next = masked_argmax(q[:, 1:], mask[:, 1:])  # double Q: the online network chooses
        assert not torch.equal(a_next, masked_argmax(q_target[:, 1:], mask[:, 1:]))
        assert torch.equal(target["actions"], F.one_hot(a_next, A).float())
        want = q_target[:, 1:].masked_fill(~mask[:, 1:], -1e9).amax(-1)
        assert torch.equal(target["max_q"], want)
    finally:
        run.close()
