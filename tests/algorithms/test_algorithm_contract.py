"""What every registered algorithm promises, checked for each one (and each of its sharing modes
and variants: ``algorithm_variant`` is parametrised from the registry in conftest.py), on real
LBF: it builds from a config and acts; one update changes every trained module; a checkpoint
round trip continues exactly; the same seed gives the same updates, another seed other ones."""

from __future__ import annotations

import io

import pytest
import torch
from tianshou.algorithm.algorithm_base import torch_train_mode

from bdps_agents.algorithms import algorithm_spec, build_algorithm, run_label
from bdps_agents.algorithms.value_decomposition import ValueDecomposition
from bdps_agents.exploration import warmup
from bdps_agents.training import build_run


def _filled_run(cfg, episodes: int = 6):
    run = build_run(cfg)
    warmup(run.train_collector, n_episode=episodes)
    return run


def _batch(run, n: int = 4):
    batch, indices = run.buffer.sample(n)
    return run.algorithm._preprocess_batch(batch, run.buffer, indices)


def _update(algorithm: ValueDecomposition, batch) -> float:
    with torch_train_mode(algorithm):
        return algorithm._update_with_batch(batch).loss


def test_builds_from_its_config_and_acts(algorithm_variant, small_lbf_config):
    cfg = small_lbf_config(algorithm_variant)
    run = _filled_run(cfg)
    try:
        assert isinstance(run.algorithm, ValueDecomposition)
        assert run.policy.n_agents == run.spec.n_agents == 2
        assert _batch(run).valid.shape[0] == 4  # whole episodes were stored
        # its label names it (logdirs, figures)
        label = run_label(cfg)
        assert label.startswith(cfg.algorithm.name)
    finally:
        run.close()


def _untouched_after_one_update(run) -> list[str]:
    """The trained modules (the policy's parts, the mixers) that one update leaves unchanged."""
    alg = run.algorithm
    modules = {f"policy.{n}": m for n, m in alg.policy.named_children()}
    modules.update({n: m for n, m in alg.named_children() if "mixer" in n and "target" not in n})
    trained = {n: m for n, m in modules.items() if any(p.requires_grad for p in m.parameters())}
    before = {n: [p.detach().clone() for p in m.parameters()] for n, m in trained.items()}
    loss = _update(alg, _batch(run))
    assert loss is not None and torch.isfinite(torch.tensor(loss))
    assert alg.num_updates == 1
    return [
        name
        for name, module in trained.items()
        if all(torch.equal(a, b) for a, b in zip(before[name], module.parameters(), strict=True))
    ]


def test_one_update_changes_every_trained_module(algorithm_variant, small_lbf_config):
    run = _filled_run(small_lbf_config(algorithm_variant))
    try:
        assert _untouched_after_one_update(run) == []
    finally:
        run.close()


def test_the_module_check_finds_a_module_no_loss_reaches(small_lbf_config):
    # planted: BDPS with its VAE loss weighted 0 never trains the role selector
    cfg = small_lbf_config({"algorithm.name": "bdps", "bdps.role_loss_weight": 0.0})
    run = _filled_run(cfg)
    try:
        assert _untouched_after_one_update(run) == ["policy.role_selector"]
    finally:
        run.close()


def test_a_checkpoint_round_trip_continues_exactly(algorithm_variant, small_lbf_config):
    cfg = small_lbf_config(algorithm_variant)
    run = _filled_run(cfg)
    try:
        batches = [_batch(run) for _ in range(3)]
        for batch in batches[:2]:
            _update(run.algorithm, batch)
        saved = io.BytesIO()  # as a checkpoint file holds it: no tensor shared with the run
        torch.save(run.algorithm.state_dict(), saved)
        saved.seek(0)
        copy = build_algorithm(cfg, run.spec)
        copy.load_state_dict(torch.load(saved, weights_only=True))
        assert copy.num_updates == run.algorithm.num_updates == 2
        # the next update is the same in both: networks, optimiser, generators restored
        assert _update(copy, batches[2]) == _update(run.algorithm, batches[2])
        after, after_copy = run.algorithm.state_dict(), copy.state_dict()
        assert after.keys() == after_copy.keys()
        for name, value in after.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, after_copy[name]), name
    finally:
        run.close()


def test_the_same_seed_gives_the_same_updates(algorithm_variant, small_lbf_config):
    def losses(seed: int) -> list[float]:
        run = _filled_run(small_lbf_config({**algorithm_variant, "training.seed": seed}))
        try:
            return [_update(run.algorithm, _batch(run)) for _ in range(3)]
        finally:
            run.close()

    first = losses(3)
    assert losses(3) == first  # exactly
    assert losses(4) != first


@pytest.mark.parametrize("field", ["summary", "options", "sharing"])
def test_its_spec_is_complete(algorithm_variant, field):
    spec = algorithm_spec(algorithm_variant["algorithm.name"])
    assert getattr(spec, field)
    assert spec.options().model_dump() is not None  # its section has defaults for every key


def test_its_policy_names_the_torch_generators_it_samples_with(algorithm_variant, small_lbf_config):
    # the learner process reseeds them in its child; checkpoints save them by these names
    run = build_run(small_lbf_config(algorithm_variant))
    try:
        generators = run.policy.torch_generators()
        assert set(generators) <= set(run.policy.generator_states())
        assert all(isinstance(g, torch.Generator) for g in generators.values())
        if algorithm_variant["algorithm.name"] == "bdps":  # role sampling and the VAE
            assert generators == {"torch": run.policy.torch_rng}
    finally:
        run.close()
