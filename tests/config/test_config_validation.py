"""Issue 19: values that used to be accepted are refused, each with one line naming the input.

Every case here passed (or crashed with a traceback) at commit 2ef3d13. The CLI cases fail
before any training starts; they use a tiny scenario so that a regression trains for seconds
instead of hanging.
"""

from __future__ import annotations

import copy
import itertools
import re
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

from bdps_agents.adapters import AdapterArgumentError, check_adapter_kwargs, make_env
from bdps_agents.adapters.lbf import LBFParallelEnv
from bdps_agents.adapters.lbf.placement import _FOOD_ZONE, _blocked_placement
from bdps_agents.algorithms import algorithm_spec, available_algorithms
from bdps_agents.cli import main as cli_main
from bdps_agents.config import ConfigError, ExperimentConfig, build_config
from bdps_agents.grid import GridConfig, expand, load_grid
from bdps_agents.presets import apply_overrides, load_config, merge_overrides

# ------------------------------------------------------------------ fields, by type


def _fields(kind: type) -> list[str]:
    """Every ``section.key`` of the config whose type is ``kind`` (or ``kind | None``)."""
    out = []
    sections = {section: info.annotation for section, info in ExperimentConfig.model_fields.items()}
    sections.update({name: algorithm_spec(name).options for name in available_algorithms()})
    for section, model in sections.items():
        if not (isinstance(model, type) and hasattr(model, "model_fields")):
            continue
        hints = typing.get_type_hints(model)
        for key in model.model_fields:
            hint = hints[key]
            if hint is kind or (
                kind in typing.get_args(hint) and type(None) in typing.get_args(hint)
            ):
                out.append(f"{section}.{key}")
    return out


FLOAT_FIELDS = _fields(float)
INT_FIELDS = _fields(int)
BOOL_FIELDS = _fields(bool)


def test_the_field_lists_cover_the_issues_fields() -> None:
    named = {
        "algorithm.lr",
        "algorithm.max_grad_norm",
        "algorithm.reward_scale",
        "bdps.kl_weight",
        "bdps.role_loss_weight",
        "bdps.group_loss_weight",
    }
    assert named <= set(FLOAT_FIELDS)
    assert {"training.total_steps", "training.seed", "training.checkpoint_interval"} <= set(
        INT_FIELDS
    )
    assert {"training.progress", "algorithm.double_q", "network.agent_id_input"} <= set(BOOL_FIELDS)
    assert len(INT_FIELDS) > 20 and len(BOOL_FIELDS) >= 5


def _refused(overrides: list[str], pattern: str, scenario: str = "lbf/8x8-2p-2f") -> str:
    # an algorithm's own field is read with that algorithm chosen (another's section is refused)
    chosen = [
        f"algorithm.name={section}"
        for section in {item.split(".")[0] for item in overrides}
        if section in available_algorithms()
    ]
    with pytest.raises(ConfigError) as err:
        load_config(scenario, chosen + overrides)
    message = str(err.value)
    assert re.search(pattern, message), message
    assert "\n" not in message, message  # one mistake, one line
    return message


# ------------------------------------------------------------------ 9: finite floats


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
@pytest.mark.parametrize("field", FLOAT_FIELDS)
def test_every_float_field_must_be_finite(field: str, value: str) -> None:
    _refused([f"{field}={value}"], rf"{re.escape(field)}: .*finite")


def test_grid_floats_must_be_finite_too() -> None:
    data = {"scenarios": ["lbf/8x8-2p-2f"], "methods": {"q": {}}, "seeds": [0]}
    with pytest.raises(ValueError, match="cpus_per_run"):
        GridConfig.model_validate({**data, "cpus_per_run": float("inf")})


# ------------------------------------------------------------------ 9: no coercion


@pytest.mark.parametrize("field", INT_FIELDS)
def test_no_bool_passes_as_an_int(field: str) -> None:
    _refused([f"{field}=true"], rf"{re.escape(field)}: Input should be a valid integer")


@pytest.mark.parametrize("field", FLOAT_FIELDS)
def test_no_bool_passes_as_a_float(field: str) -> None:
    _refused([f"{field}=true"], rf"{re.escape(field)}: Input should be a valid number")


@pytest.mark.parametrize("field", BOOL_FIELDS)
def test_no_int_or_string_passes_as_a_bool(field: str) -> None:
    _refused([f"{field}=1"], rf"{re.escape(field)}: Input should be a valid boolean")
    _refused([f"{field}='no'"], rf"{re.escape(field)}: Input should be a valid boolean")


@pytest.mark.parametrize(
    ("override", "field"),
    [("training.seed='3'", "training.seed"), ("algorithm.lr='0.1'", "algorithm.lr")],
)
def test_no_string_passes_as_a_number(override: str, field: str) -> None:
    _refused([override], rf"{re.escape(field)}: Input should be a valid")


@pytest.mark.parametrize(
    ("override", "expected"),
    [("algorithm.lr=1", 1.0), ("algorithm.lr=1e-3", 1e-3), ("algorithm.lr=2.5E-4", 2.5e-4)],
)
def test_yaml_numbers_still_pass_as_floats(override: str, expected: float) -> None:
    # YAML gives `1` as an int (fine for a float field) and, read as YAML 1.2, `1e-3` as a float
    lr = load_config("lbf/8x8-2p-2f", [override]).algorithm.lr
    assert type(lr) is float and lr == expected


def test_grid_seeds_are_strict_ints() -> None:
    data = {"scenarios": ["lbf/8x8-2p-2f"], "methods": {"q": {}}}
    with pytest.raises(ValueError, match=r"seeds\.0"):
        GridConfig.model_validate({**data, "seeds": [True]})
    with pytest.raises(ValueError, match="total_steps"):
        GridConfig.model_validate({**data, "seeds": [0], "total_steps": True})


# ------------------------------------------------------------------ 8: device


@pytest.mark.parametrize("device", ["banana", "CPU", "cuda:x", "gpu", "cuda:-1"])
def test_device_names_are_validated(device: str) -> None:
    _refused(
        [f"training.device={device}"],
        r"training\.device: must be cpu, cuda, cuda:N or auto, got",
    )
    for device in ("cpu", "cuda", "cuda:1", "auto"):  # whether the machine has it: at build
        assert load_config("lbf/8x8-2p-2f", [f"training.device={device}"]).training.device == device


# ------------------------------------------------------------------ 9, 10: adapter kwargs


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ("env.kwargs.coop='no'", r"adapter 'lbf': coop must be true or false, got 'no'"),
        ("env.kwargs.coop=1", r"coop must be true or false, got 1"),
        ("env.kwargs.normalize_obs='no'", r"normalize_obs must be true or false, got 'no'"),
        ("env.kwargs.normalize_reward='no'", r"normalize_reward must be true or false"),
        ("env.kwargs.penalty=true", r"penalty must be a finite number >= 0, got True"),
        (
            "env.kwargs.tsk=8x8-2p-2f",
            r"adapter 'lbf' has no keyword argument 'tsk'; it accepts field_size, .*\btask\b",
        ),
        ("env.kwargs.task=3", r"task must be a string such as '15x15-4p-5f', got 3"),
        ("env.kwargs.task=8x8-2p", r"cannot parse LBF task '8x8-2p'"),
        ("env.kwargs.task=8x8-2p-0f", r"LBF task '8x8-2p-0f': max_num_food must be .* got 0"),
        ("env.kwargs.task=2x2-1p-1f", r"LBF task '2x2-1p-1f': field_size rows must be"),
        ("env.kwargs.task=8x8-2p-2f-0s", r"LBF task '8x8-2p-2f-0s': sight must be"),
        ("env.kwargs.task=4x4-12p-1f", r"LBF task '4x4-12p-1f': .*cannot always be placed"),
        ("env.kwargs.task=5x5-2p-2f", r"LBF task '5x5-2p-2f': .*cannot always be placed"),
    ],
)
def test_bad_adapter_kwargs_are_refused_with_the_config(override: str, pattern: str) -> None:
    message = _refused([override], pattern)
    assert "env.kwargs" in message


def test_adapters_need_their_required_kwargs() -> None:
    with pytest.raises(ConfigError, match=r"env\.kwargs: adapter 'smac' needs .*map_name"):
        build_config({"env": {"adapter": "smac", "kwargs": {}}})
    with pytest.raises(ConfigError, match=r"adapter 'grf' has no keyword argument 'map_name'"):
        build_config({"env": {"adapter": "grf", "kwargs": {"map_name": "3m"}}})


def test_make_env_checks_kwargs_too() -> None:
    with pytest.raises(AdapterArgumentError, match="'tsk'") as err:
        make_env("lbf", tsk="8x8-2p-2f")
    assert isinstance(err.value, TypeError) and isinstance(err.value, ConfigError)
    with pytest.raises(AdapterArgumentError, match="coop must be true or false"):
        check_adapter_kwargs("lbf", {"coop": "no"})


@pytest.mark.parametrize("flag", ["coop", "normalize_obs", "normalize_reward"])
def test_lbf_flags_are_strict_bools(flag: str) -> None:
    with pytest.raises(ValueError, match=f"{flag} must be true or false, got 'no'"):
        LBFParallelEnv(**{flag: "no"})
    env = LBFParallelEnv(**{flag: False})
    flags = {
        "coop": env.coop,
        "normalize_obs": env.normalize_obs,
        "normalize_reward": env.foraging_env._normalize_reward,
    }
    defaults = {"coop": False, "normalize_obs": True, "normalize_reward": True}
    assert flags == {**defaults, flag: False}


# ------------------------------------------------------------------ 9: LBF placement


@pytest.mark.parametrize(
    ("task", "blocker"),
    [
        ("4x4-12p-1f", "players on (1, 1), (1, 2), (2, 1), (2, 2)"),  # they can cover the interior
        ("5x5-2p-2f", "food"),  # the first food can rule out the whole 3x3 interior
        ("5x5-9p-1f", "players"),
        ("6x6-2p-3f", "food"),
    ],
)
def test_lbf_refuses_tasks_whose_food_cannot_always_be_placed(task: str, blocker: str) -> None:
    with pytest.raises(ValueError, match="cannot always be placed") as err:
        LBFParallelEnv(task=task)
    message = str(err.value)
    assert blocker in message and "Criterion: every food must find a cell" in message


@pytest.mark.parametrize(
    "task",
    ["5x5-8p-1f", "6x6-2p-2f", "6x6-3p-2f", "7x7-2p-3f", "8x8-2p-4f", "8x8-5p-4f", "15x15-4p-5f"],
)
def test_lbf_accepts_tasks_that_always_place_their_food(task: str) -> None:
    LBFParallelEnv(task=task)  # some of these fail the plain count "13 cells per food"


def _blocks(rows: int, cols: int, players: int, foods: list, player_cells: list) -> bool:
    """Whether ``foods`` (legal) and ``player_cells`` leave no inner cell for another food."""
    inner = {(r, c) for r in range(1, rows - 1) for c in range(1, cols - 1)}
    zone = {(r + dr, c + dc) for r, c in foods for dr, dc in _FOOD_ZONE}
    apart = all(
        abs(a[0] - b[0]) + abs(a[1] - b[1]) > 2 for a, b in itertools.combinations(foods, 2)
    )
    return (
        apart
        and set(foods) <= inner
        and len(player_cells) <= players
        and not inner - zone - set(player_cells)
    )


def _brute_force_blockable(rows: int, cols: int, players: int, foods: int) -> bool:
    inner = [(r, c) for r in range(1, rows - 1) for c in range(1, cols - 1)]
    for k in range(foods):
        for chosen in itertools.combinations(inner, k):
            zone = {(r + dr, c + dc) for r, c in chosen for dr, dc in _FOOD_ZONE}
            free = [cell for cell in inner if cell not in zone]
            if len(free) <= players and _blocks(rows, cols, players, list(chosen), free):
                return True
    return False


def test_placement_criterion_is_exact_on_small_fields() -> None:
    for rows, cols in itertools.product(range(3, 8), repeat=2):
        for players, foods in itertools.product(range(5), range(1, 4)):
            found = _blocked_placement(rows, cols, players, foods)
            if found is not None:  # a witness that really blocks
                assert _blocks(rows, cols, players, *found), (rows, cols, players, foods)
            assert (found is not None) == _brute_force_blockable(rows, cols, players, foods), (
                rows,
                cols,
                players,
                foods,
            )


# ------------------------------------------------------------------ 5: overrides merge


def test_a_mapping_override_merges_into_its_section() -> None:
    cfg = load_config("lbf/15x15-4p-5f", ["algorithm.name=bdps", "bdps={n_roles: 3}"])
    assert cfg.bdps.n_roles == 3 and cfg.bdps.group_interval_multiple == 2  # the preset's
    cfg = load_config("lbf/15x15-4p-5f", ["env.kwargs={max_episode_steps: 30}"])
    assert cfg.env.kwargs == {"task": "15x15-4p-5f", "max_episode_steps": 30}


def test_dotted_and_nested_overrides_of_one_section_combine() -> None:
    cfg = load_config("lbf/8x8-2p-2f", ["training.seed=4", "training={test_interval: 77}"])
    assert (cfg.training.seed, cfg.training.test_interval) == (4, 77)
    # the same value twice is no conflict
    assert (
        load_config("lbf/8x8-2p-2f", ["training.seed=4", "training={seed: 4}"]).training.seed == 4
    )


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        (
            ["training.seed=1", "training={seed: 2}"],
            (
                r"training\.seed is given twice: 1 \(from 'training\.seed=1'\) and 2 "
                r"\(from 'training=\{seed: 2\}'\)"
            ),
        ),
        (["training.seed=1", "training.seed=true"], r"training\.seed is given twice: 1 .* True"),
        (["training=5", "training.seed=1"], r"training is given twice: 5 .* a section"),
    ],
)
def test_conflicting_overrides_name_both(overrides: list[str], pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern) as err:
        apply_overrides({}, overrides)
    assert "\n" not in str(err.value)


def test_merge_overrides_leaves_its_input_alone() -> None:
    data = {"training": {"seed": 1, "total_steps": 5}}
    before = copy.deepcopy(data)
    out = merge_overrides(data, [("training", {"seed": 2}, "test")])
    assert out == {"training": {"seed": 2, "total_steps": 5}} and data == before


def _grid(tmp_path: Path, **changes: Any) -> Path:
    data = {
        "name": "g",
        "results_dir": str(tmp_path / "results"),
        "scenarios": ["lbf/8x8-2p-2f"],
        "methods": {"qmix": {"network.sharing": "full"}},
        "seeds": [0],
        **changes,
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))  # key order as written
    return path


def test_grid_overrides_merge_dotted_and_nested_keys(tmp_path: Path) -> None:
    # the issue's case: `training: {...}` after `training.total_steps` replaced the section
    overrides = {"training.total_steps": 100, "training": {"test_interval": 50}}
    methods = {"qmix": {"training": {"log_interval": 7}}}
    (spec,) = expand(load_grid(_grid(tmp_path, overrides=overrides, methods=methods)))
    training = spec.config.training
    assert (training.total_steps, training.test_interval, training.log_interval) == (100, 50, 7)
    assert training.seed == 0 and training.progress is False


def test_a_method_overrides_the_common_overrides(tmp_path: Path) -> None:
    # the specific over the general: a method may change what the grid's overrides set
    changes = {
        "overrides": {"network.sharing": "none", "training.test_interval": 50},
        "methods": {"qmix": {"network": {"sharing": "full"}}},
    }
    (spec,) = expand(load_grid(_grid(tmp_path, **changes)))
    assert spec.config.network.sharing == "full" and spec.config.training.test_interval == 50


@pytest.mark.parametrize(
    ("changes", "pattern"),
    [
        (  # the issue's own example: its seed was silently replaced by the grid's
            {"overrides": {"training.total_steps": 100, "training": {"seed": 3}}},
            r"training\.seed is given twice: 3 \(from overrides\) and 0 \(from the grid's seeds\)",
        ),
        (
            {"total_steps": 500, "overrides": {"training.total_steps": 100}},
            r"training\.total_steps is given twice: 100 \(from overrides\) and 500",
        ),
        (
            {"methods": {"qmix": {"training": {"seed": 5}}}},
            r"training\.seed is given twice: 5 \(from methods\.qmix\) and 0 \(from the grid's",
        ),
        (
            {"overrides": {"training.progress": True}},
            r"training\.progress is given twice: True \(from overrides\) and False",
        ),
    ],
)
def test_grid_conflicts_are_refused_before_any_run(tmp_path: Path, changes, pattern) -> None:
    grid = load_grid(_grid(tmp_path, **changes))
    with pytest.raises(ConfigError, match=pattern) as err:
        expand(grid)
    assert "\n" not in str(err.value)


def test_grid_conflict_inside_one_mapping_is_refused_when_read(tmp_path: Path) -> None:
    overrides = {"training.total_steps": 100, "training": {"total_steps": 200}}
    with pytest.raises(ConfigError) as err:
        load_grid(_grid(tmp_path, overrides=overrides))
    message = str(err.value)
    assert re.search(
        r"overrides: training\.total_steps is given twice: 100 \(from key "
        r"'training\.total_steps'\) and 200 \(from key 'training'\)",
        message,
    ), message
    assert "\n" not in message


def test_grid_set_override_replaces_a_dotted_leaf(tmp_path: Path) -> None:
    grid = load_grid(_grid(tmp_path, overrides={"training.test_interval": 10}))
    grid = grid.with_overrides(["overrides.training.test_interval=20", "total_steps=30"])
    (spec,) = expand(grid)
    assert (spec.config.training.test_interval, spec.config.training.total_steps) == (20, 30)


# ------------------------------------------------------------------ 9, 10: files


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        (
            b"training: {seed: 1}\nenv: {adapter: lbf}\ntraining: {total_steps: 5}\n",
            r"duplicate key 'training' in \S*FILE \(lines 1 and 3\)",
        ),
        (
            b"training:\n  seed: 1\n  seed: 2\n",
            r"duplicate key 'seed' in \S*FILE \(lines 2 and 3\)",
        ),
        (b"training: {seed: 1, seed: 1}\n", r"duplicate key 'seed' in \S*FILE \(lines 1 and 1\)"),
        (b"", r"FILE is empty"),
        (b"# only a comment\n", r"FILE is empty"),
        (
            "# caf\xe9\ntraining: {}\n".encode("latin-1"),
            r"FILE is not UTF-8 text \(byte 0xe9 on line 1\)",
        ),
    ],
)
def test_bad_files_are_refused_naming_file_and_key(tmp_path: Path, content, pattern) -> None:
    for name, load in (("scenario.yaml", load_config), ("experiment.yaml", load_grid)):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ConfigError, match=pattern.replace("FILE", re.escape(name))) as err:
            load(str(path))
        assert "\n" not in str(err.value)


def test_yaml_merge_keys_and_a_byte_order_mark_still_load(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    # `<<` merges may repeat a key that the mapping then sets: YAML's rule, not a duplicate
    text = "training:\n  <<: {seed: 1, test_interval: 5}\n  seed: 2\n"
    path.write_bytes("\ufeff".encode() + text.encode())
    training = load_config(str(path)).training
    assert (training.seed, training.test_interval) == (2, 5)


def test_duplicate_key_in_a_set_value_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"duplicate key 'seed' in override"):
        apply_overrides({}, ["training={seed: 1, seed: 2}"])


# ------------------------------------------------------------------ 10: the CLI prints one line


@pytest.fixture
def tiny_scenario(small_lbf, tmp_path: Path) -> Path:
    data = copy.deepcopy(small_lbf)
    data["training"].update(total_steps=20, test_interval=20, test_episodes=1)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _cli_refuses(argv: list[str], capsys, pattern: str) -> None:
    assert cli_main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert re.search(pattern, lines[0]), lines[0]
    assert "training" not in captured.out  # refused before any run started


@pytest.mark.parametrize(
    ("sets", "pattern"),
    [
        (["training.device=gpu"], r"training\.device: must be cpu, cuda, cuda:N or auto"),
        (["training.total_steps=true"], r"training\.total_steps: Input should be a valid integer"),
        (["algorithm.lr=.inf"], r"algorithm\.lr: Input should be a finite number"),
        (["env.kwargs.tsk=6x6-2p-1f"], r"adapter 'lbf' has no keyword argument 'tsk'"),
        (["env.kwargs.task=3"], r"task must be a string"),
        (["env.kwargs.task=8x8-2p"], r"cannot parse LBF task '8x8-2p'"),
        (["env.kwargs.task=4x4-12p-1f"], r"LBF task '4x4-12p-1f': .*cannot always be placed"),
        (["env.kwargs.coop='no'"], r"coop must be true or false"),
        (["training.seed=1", "training={seed: 2}"], r"training\.seed is given twice"),
    ],
)
def test_cli_train_prints_one_line(tiny_scenario: Path, tmp_path: Path, capsys, sets, pattern):
    argv = ["train", "--scenario", str(tiny_scenario), "--logdir", str(tmp_path / "run")]
    for item in sets:
        argv += ["--set", item]
    if not any("total_steps" in item for item in sets):  # a regression then trains 20 steps
        argv += ["--steps", "20"]
    _cli_refuses([*argv, "--no-progress"], capsys, pattern)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        ("# caf\xe9\n".encode("latin-1"), r"not UTF-8 text"),
        (b"training: {seed: 1}\ntraining: {seed: 2}\n", r"duplicate key 'training'"),
        (b"", r"is empty"),
    ],
)
def test_cli_bad_scenario_file_prints_one_line(tmp_path: Path, capsys, content, pattern) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    argv = ["train", "--scenario", str(path), "--logdir", str(tmp_path / "run"), "--steps", "20"]
    _cli_refuses([*argv, "--no-progress"], capsys, rf"bad\.yaml.*{pattern}|{pattern}.*bad\.yaml")


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        ("# caf\xe9\nname: x\n".encode("latin-1"), r"grid\.yaml is not UTF-8 text"),
        (b"", r"grid\.yaml is empty"),
        (b"name: x\nseeds: [0]\nseeds: [1]\n", r"duplicate key 'seeds' in .*grid\.yaml"),
        (
            (
                b"scenarios: [SCENARIO]\nmethods: {q: {}}\nseeds: [0]\n"
                b"overrides: {training.seed: 3, training.total_steps: 20}\n"
            ),
            r"training\.seed is given twice: 3 \(from overrides\) and 0",
        ),
        (
            b"scenarios: [SCENARIO]\nmethods: {q: {}}\nseeds: [true]\n",
            r"seeds\.0: Input should be a valid integer",
        ),
    ],
)
def test_cli_bad_experiment_file_prints_one_line(
    tiny_scenario: Path, tmp_path: Path, capsys, content: bytes, pattern: str
) -> None:
    path = tmp_path / "grid.yaml"
    path.write_bytes(content.replace(b"SCENARIO", str(tiny_scenario).encode()))
    results = tmp_path / "results"
    _cli_refuses(
        ["experiment", str(path), "--local", "--results-dir", str(results)], capsys, pattern
    )
    assert not results.exists()


# ------------------------------------------------------------------ old spellings
def test_old_spellings_still_load_with_a_warning_giving_the_new_one() -> None:
    with pytest.warns(FutureWarning, match=r"network.sharing=bilevel is now algorithm.name=bdps"):
        cfg = load_config("lbf/8x8-2p-2f", ["network.sharing=bilevel"])
    assert (cfg.algorithm.name, cfg.options.levels, cfg.network.sharing) == ("bdps", 2, "roles")
    assert cfg.options.group_interval_multiple == 2  # BDPS's preset for the scenario applies
    with pytest.warns(FutureWarning, match=r"individual is now .* bdps.levels=1"):
        assert build_config({"network": {"sharing": "individual"}}).options.levels == 1
    with pytest.warns(FutureWarning, match=r"network.mixer=vdn is now algorithm.name=vdn"):
        assert build_config({"network": {"mixer": "vdn"}}).algorithm.name == "vdn"
    with pytest.raises(ConfigError, match=r"bilevel \(BDPS\) contradicts algorithm.name=qmix"):
        build_config({"network": {"sharing": "bilevel"}, "algorithm": {"name": "qmix"}})


def test_the_old_sharing_flag_becomes_the_algorithm_with_a_note(capsys) -> None:
    from bdps_agents.cli import _algorithm_overrides

    assert _algorithm_overrides(None, "bilevel") == ["algorithm.name=bdps", "bdps.levels=2"]
    assert "--sharing bilevel is now spelled --algo bdps" in capsys.readouterr().err
    assert _algorithm_overrides("bdps", "individual")[-1] == "bdps.levels=1"
    assert _algorithm_overrides("qmix", "none") == ["algorithm.name=qmix", "network.sharing=none"]
    with pytest.raises(ConfigError, match="means BDPS, not --algo qmix"):
        _algorithm_overrides("qmix", "bilevel")


def test_an_unknown_algorithm_or_section_names_what_exists() -> None:
    with pytest.raises(ConfigError, match=r"unknown algorithm 'qmixx'; known algorithms: bdps"):
        build_config({"algorithm": {"name": "qmixx"}})
    known = ", ".join(available_algorithms())
    with pytest.raises(ConfigError, match=rf"unknown section 'bpds'.*\({known}\)"):
        build_config({"bpds": {"n_roles": 3}})
    with pytest.raises(ConfigError, match=r"bdps.n_rolez: Extra inputs"):
        build_config({"algorithm": {"name": "bdps"}, "bdps": {"n_rolez": 3}})
