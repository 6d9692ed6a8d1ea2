"""Config fuzzing: generated invalid configs and scenario files are all refused with an error
naming the field; generated valid ones all construct (hypothesis)."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bdps_agents.config import ConfigError, ExperimentConfig, build_config
from bdps_agents.presets import load_config

# the defaults, with BDPS's section too (an algorithm's section is allowed whichever runs)
# BDPS: the algorithm with the most settings of its own (its section, checked only when chosen)
BASE: dict[str, Any] = ExperimentConfig.model_validate({"algorithm": {"name": "bdps"}}).model_dump(
    mode="json"
)
TRIED: list[str] = []  # one entry per invalid input tried, counted below

# field -> (strategy of valid values, strategy of invalid values)
NON_NUMERIC = st.one_of(
    st.text(alphabet="abcxyz", min_size=1, max_size=5),
    st.lists(st.integers(), max_size=2),
    st.booleans(),  # bool is an int subclass: refused all the same (issue 19)
    st.sampled_from(["1", "0.5"]),  # numbers as strings are not coerced
)
NOT_AN_INT = st.one_of(NON_NUMERIC, st.floats(0.1, 0.9).map(lambda x: x + 3))


def ints(low: int, high: int = 10_000):
    invalid = st.one_of(st.integers(-1000, low - 1), NOT_AN_INT)
    return st.integers(low, high), invalid


def floats(low: float, high: float, *, low_open: bool = False):
    valid = st.floats(low, high, exclude_min=low_open, allow_nan=False)
    below = st.floats(-100.0, low, exclude_max=not low_open, allow_nan=False)
    invalid = st.one_of(below, NON_NUMERIC, st.sampled_from([float("nan"), float("inf")]))
    if high < 1e9:
        invalid = st.one_of(invalid, st.floats(high, 1e6, exclude_min=True))
    return valid, invalid


def choice(options: list[str]):
    other = st.text(alphabet="abcdefqz_", min_size=1, max_size=8).filter(lambda s: s not in options)
    return st.sampled_from(options), st.one_of(other, st.integers())


FIELDS: dict[str, tuple[st.SearchStrategy, st.SearchStrategy]] = {
    "env.adapter": choice(["lbf"]),
    "env.reward_aggregation": choice(["sum", "mean"]),
    "env.num_train_envs": ints(1, 16),
    "env.num_test_envs": ints(1, 16),
    "env.vector_env": choice(["auto", "dummy", "subproc", "ray"]),
    "network.hidden_dim": ints(1, 256),
    "network.sharing": choice(["roles"]),  # BDPS's sharing mode
    "algorithm.name": choice(["bdps"]),
    "network.mixing_embed_dim": ints(1, 128),
    "network.hypernet_hidden_dim": ints(1, 128),
    "bdps.role_interval": ints(1, 50),
    "bdps.group_interval_multiple": ints(1, 4),
    "bdps.kl_weight": floats(0.0, 1e9),
    "bdps.role_loss_weight": floats(0.0, 1e9),
    "bdps.group_loss_weight": floats(0.0, 1e9),
    "bdps.gat_dim": ints(1, 256),
    "exploration.eps_start": floats(0.0, 1.0),
    "exploration.eps_end": floats(0.0, 1.0),
    "exploration.anneal_steps": ints(0, 10**7),
    "exploration.eps_test": floats(0.0, 1.0),
    "replay.warmup_episodes": ints(1, 100),
    "algorithm.gamma": floats(0.0, 1.0, low_open=True),
    "algorithm.lr": floats(0.0, 1e9, low_open=True),
    "algorithm.td_lambda": floats(0.0, 1.0),
    "algorithm.target_update_interval": ints(1, 10_000),
    "algorithm.max_grad_norm": floats(0.0, 1e9, low_open=True),
    "training.total_steps": ints(1, 10**8),
    "training.seed": ints(0, 10**6),
    "training.steps_per_update": ints(1, 1000),
    "training.test_interval": ints(1, 10**6),
    "training.test_episodes": ints(1, 100),
    "training.torch_threads": ints(1, 8),
}


def with_value(path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    section, key = path.split(".")
    data[section][key] = value
    return data


def refuse(data: Any, field: str, via_file: bool) -> None:
    """The config is refused with a ConfigError whose message names ``field``."""
    TRIED.append(field)
    with pytest.raises(ConfigError) as err:
        if via_file:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "scenario.yaml"
                path.write_text(yaml.safe_dump(data))
                load_config(str(path))
        else:
            build_config(data)
    assert field in str(err.value), f"{field!r} not named in: {err.value}"


@st.composite
def invalid_field(draw) -> tuple[dict[str, Any], str]:
    path = draw(st.sampled_from(sorted(FIELDS)))
    return with_value(path, draw(FIELDS[path][1])), path


@st.composite
def unknown_key(draw) -> tuple[dict[str, Any], str]:
    key = draw(st.text(alphabet="abcdefghij_", min_size=3, max_size=10))
    data = copy.deepcopy(BASE)
    section = draw(st.sampled_from([None, *sorted(BASE)]))
    if section is None or not isinstance(data[section], dict):
        if key in data:
            key += "_x"
        data[key] = 1
        return data, key
    if key in data[section]:
        key += "_x"
    data[section][key] = draw(st.integers())
    return data, key


@st.composite
def broken_relation(draw) -> tuple[dict[str, Any], str]:
    data = copy.deepcopy(BASE)
    kind = draw(st.sampled_from(["k<m", "m<2", "k<2", "batch>capacity"]))
    if kind == "k<m":
        m = draw(st.integers(3, 8))
        data["bdps"].update(n_groups=m, n_roles=draw(st.integers(2, m - 1)))
        return data, "bdps.n_roles"
    if kind == "m<2":
        data["bdps"]["n_groups"] = draw(st.integers(-5, 1))
        return data, "n_groups"
    if kind == "k<2":
        data["bdps"]["n_roles"] = draw(st.integers(-5, 1))
        return data, "n_roles"
    capacity = draw(st.integers(1, 100))
    data["replay"].update(
        capacity_episodes=capacity, batch_episodes=capacity + draw(st.integers(1, 50))
    )
    return data, "replay.batch_episodes"


FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(case=st.one_of(invalid_field(), unknown_key(), broken_relation()), via_file=st.booleans())
def test_invalid_config_is_refused_naming_the_field(case, via_file: bool) -> None:
    data, field = case
    refuse(data, field, via_file)


@FUZZ
@given(
    n_agents=st.integers(2, 8),
    limit=st.integers(2, 60),
    k=st.integers(2, 8),
    t_u=st.integers(1, 80),
    e=st.integers(1, 4),
)
def test_env_dependent_constraints_name_the_field(n_agents, limit, k, t_u, e) -> None:
    """n >= k and T_U, T_V below the episode limit need the env's sizes (checked at build)."""
    data = copy.deepcopy(BASE)
    data["algorithm"]["name"] = "bdps"
    data["network"]["sharing"] = None  # BDPS's own (by roles)
    data["bdps"].update(n_roles=k, n_groups=2, role_interval=t_u, group_interval_multiple=e)
    cfg = build_config(data)
    if n_agents < k:
        expected = "bdps.n_roles"
    elif t_u >= limit:
        expected = "bdps.role_interval"
    elif t_u * e >= limit:
        expected = "T_V"
    else:
        cfg.check_env(n_agents, limit)  # valid: no error
        return
    TRIED.append(expected)
    with pytest.raises(ConfigError, match=expected.replace(".", r"\.")):
        cfg.check_env(n_agents, limit)


@st.composite
def valid_config(draw) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    for path in draw(st.lists(st.sampled_from(sorted(FIELDS)), max_size=8, unique=True)):
        section, key = path.split(".")
        data[section][key] = draw(FIELDS[path][0])
    m = draw(st.integers(2, 6))
    data["bdps"].update(n_groups=m, n_roles=draw(st.integers(m, 8)))
    capacity = draw(st.integers(1, 10_000))
    data["replay"].update(capacity_episodes=capacity, batch_episodes=draw(st.integers(1, capacity)))
    return data


@settings(max_examples=150, deadline=None)
@given(data=valid_config())
def test_valid_configs_construct(data) -> None:
    cfg = build_config(data)
    assert cfg.model_dump(mode="json") == build_config(cfg.model_dump(mode="json")).model_dump(
        mode="json"
    )


def test_at_least_200_invalid_inputs_were_tried() -> None:
    if not TRIED:
        pytest.skip("the fuzz tests did not run in this session (-k?)")
    assert len(TRIED) >= 200, len(TRIED)
