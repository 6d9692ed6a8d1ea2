"""Config validation, presets and overrides."""

from __future__ import annotations

import pytest

from bdps_agents.config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    build_config,
    load_config,
    scenario_names,
)


def test_defaults_construct():
    cfg = ExperimentConfig()
    assert cfg.network.sharing == "full" and cfg.algorithm.gamma == 0.99


@pytest.mark.parametrize("name", scenario_names())
def test_every_preset_loads(name):
    cfg = load_config(name)
    assert cfg.scenario == name


@pytest.mark.parametrize(
    "data, field",
    [
        ({"algorithm": {"lr": -1}}, "algorithm.lr"),
        ({"algorithm": {"gamma": 1.5}}, "algorithm.gamma"),
        ({"algorithm": {"td_lambda": 2}}, "algorithm.td_lambda"),
        ({"exploration": {"eps_end": "a lot"}}, "exploration.eps_end"),
        ({"network": {"sharing": "sometimes"}}, "network.sharing"),
        ({"network": {"hidden_dim": 0}}, "network.hidden_dim"),
        ({"replay": {"batch_episodes": 64, "capacity_episodes": 10}}, "replay"),
        ({"training": {"total_steps": 0}}, "training.total_steps"),
        ({"training": {"stepz": 5}}, "training.stepz"),  # typo: unknown key
        ({"envv": {}}, "envv"),
        ({"env": {"num_train_envs": 0}}, "env.num_train_envs"),
    ],
)
def test_invalid_values_name_the_field(data, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        build_config(data)


def test_overrides_are_parsed_as_yaml_and_validated():
    cfg = load_config("lbf/8x8-2p-2f", ["algorithm.lr=0.001", "network.sharing=none"])
    assert cfg.algorithm.lr == 0.001 and cfg.network.sharing == "none"
    with pytest.raises(ConfigError, match=r"algorithm\.lr"):
        load_config("lbf/8x8-2p-2f", ["algorithm.lr=fast"])
    with pytest.raises(ConfigError, match="section.key=value"):
        apply_overrides({}, ["algorithm.lr"])


def test_unknown_scenario_lists_presets():
    with pytest.raises(ConfigError, match="lbf/8x8-2p-2f-coop"):
        load_config("lbf/does-not-exist")


def test_yaml_file_scenario(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("env:\n  adapter: lbf\n  kwargs: {task: 5x5-2p-1f}\ntraining:\n  seed: 7\n")
    cfg = load_config(str(path))
    assert cfg.training.seed == 7 and cfg.scenario == "mine"
    path.write_text("env: [not, a, mapping\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(str(path))
