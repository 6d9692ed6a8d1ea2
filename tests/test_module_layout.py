"""The module layout of issue 20: the learner process and the memory helpers import no part of the
training stack (no import cycle through qmix), and policies name their torch generators."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import SMALL_LBF, config_with

from bdps_agents.training import EnvSpec, build_policy, make_joint


def _loaded_after(statement: str) -> set[str]:
    """The bdps_agents modules a fresh interpreter holds after ``statement``."""
    code = (
        f"{statement}; import sys; print(*(m for m in sys.modules if m.startswith('bdps_agents')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return set(out.split())


def test_the_algorithm_layer_imports_no_training_module():
    loaded = _loaded_after("import bdps_agents.qmix, bdps_agents.learner_process")
    assert "bdps_agents.memory" in loaded
    assert not {m for m in loaded if m.startswith("bdps_agents.training")}


def test_memory_and_env_spec_are_low_level():
    loaded = _loaded_after("import bdps_agents.memory, bdps_agents.env_spec")
    assert loaded == {
        "bdps_agents",
        "bdps_agents.config",
        "bdps_agents.env_spec",
        "bdps_agents.memory",
    }


@pytest.mark.parametrize("sharing", ["full", "bilevel"])
def test_policies_name_the_torch_generators_they_sample_with(sharing):
    cfg = config_with(SMALL_LBF, network={"sharing": sharing})
    policy = build_policy(cfg, EnvSpec.of(make_joint(cfg.env)))
    generators = policy.torch_generators()
    if sharing == "full":  # QMIX: numpy exploration only
        assert generators == {}
    else:  # BDPS: role sampling and the VAE, one generator saved as "torch"
        assert generators == {"torch": policy.torch_rng}
        assert set(generators) <= set(policy.generator_states())
