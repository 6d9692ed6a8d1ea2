"""Config validation, presets and overrides."""

from __future__ import annotations

import pytest

from bdps_agents.algorithms import algorithm_spec
from bdps_agents.config import ConfigError, ExperimentConfig, build_config
from bdps_agents.presets import apply_overrides, load_config, load_scenario_dict, scenario_names


def test_defaults_construct():
    cfg = ExperimentConfig()
    assert cfg.network.sharing == "full" and cfg.algorithm.gamma == 0.99


@pytest.mark.parametrize("name", scenario_names())
def test_every_preset_loads(name):
    cfg = load_config(name)
    assert cfg.scenario == name


PAPER_SMAC_MAPS = [
    "bane_vs_bane", "MMM2", "5m_vs_6m", "3s_vs_5z", "2c_vs_64zg",
    "27m_vs_30m", "6h_vs_8z", "corridor", "3s5z_vs_3s6z",
]  # fmt: skip
SMAX_PAPER_MAPS = ["5m_vs_6m", "3s_vs_5z", "27m_vs_30m", "6h_vs_8z", "3s5z_vs_3s6z"]


def test_presets_cover_the_papers_smac_maps_and_smax():
    names = set(scenario_names())
    assert {f"smac/{m}" for m in PAPER_SMAC_MAPS} <= names
    assert {f"smax/{m}" for m in SMAX_PAPER_MAPS} <= names


@pytest.mark.parametrize("map_name", SMAX_PAPER_MAPS)
def test_smax_presets_match_the_smac_ones(map_name):
    smac, smax = load_config(f"smac/{map_name}"), load_config(f"smax/{map_name}")
    assert (smac.env.adapter, smax.env.adapter) == ("smac", "smax")
    assert smax.env.kwargs == smac.env.kwargs == {"map_name": map_name}
    for section in ("network", "exploration", "algorithm"):
        assert getattr(smax, section) == getattr(smac, section), section
    # and BDPS's per-map settings (its presets, applied when BDPS is chosen)
    smac_bdps, smax_bdps = (
        load_config(f"{family}/{map_name}", ["algorithm.name=bdps"]) for family in ("smac", "smax")
    )
    assert smax_bdps.options == smac_bdps.options != ExperimentConfig().section("bdps")
    # Appendix G: eps anneals over 500k steps on 6h_vs_8z, 70k elsewhere
    assert smax.exploration.anneal_steps == (500_000 if map_name == "6h_vs_8z" else 70_000)


@pytest.mark.parametrize(
    ("adapter", "kwargs", "resolved"),
    [
        ("smax", {"map_name": "3m"}, "smax_batched"),
        ("lbf", {}, "dummy"),
        ("grf", {}, "dummy"),
        ("smac", {"map_name": "3m"}, "dummy"),
    ],
)
def test_auto_vector_env_batches_smax_only(adapter, kwargs, resolved):
    env = {"adapter": adapter, "kwargs": kwargs}
    assert ExperimentConfig.model_validate({"env": env}).env.vector_env == resolved
    explicit = {**env, "vector_env": "auto"}
    assert ExperimentConfig.model_validate({"env": explicit}).env.vector_env == resolved
    chosen = {**env, "vector_env": "subproc"}
    assert ExperimentConfig.model_validate({"env": chosen}).env.vector_env == "subproc"


def test_smax_presets_step_all_envs_in_one_call():
    for name in scenario_names():
        cfg = load_config(name)
        want = "smax_batched" if cfg.env.adapter == "smax" else "dummy"
        assert cfg.env.vector_env == want, name


@pytest.mark.parametrize(
    ("data", "field"),
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


@pytest.mark.parametrize("scenario", scenario_names())
def test_scenario_presets_hold_the_env_and_its_budget_only(scenario):
    # an algorithm's per-scenario settings live with the algorithm (its presets), not here
    assert set(load_scenario_dict(scenario)) <= {
        "scenario",
        "env",
        "exploration",
        "replay",
        "training",
    }


def test_every_algorithm_preset_belongs_to_a_scenario_and_validates():
    from importlib import resources

    presets = resources.files("bdps_agents.algorithms.bdps.presets")
    names = [
        f"{family.name}/{f.name[:-5]}"
        for family in presets.iterdir()
        if family.is_dir()
        for f in family.iterdir()
        if f.name.endswith(".yaml")
    ]
    assert len(names) == 21 and set(names) == set(scenario_names())
    for name in names:
        cfg = load_config(name, ["algorithm.name=bdps"])
        assert cfg.options == cfg.options.model_validate(algorithm_spec("bdps").preset(name))
