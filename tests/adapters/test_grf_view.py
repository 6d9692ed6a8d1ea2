"""The Dec-POMDP view of Google Research Football (pure NumPy; gfootball is not needed)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from bdps_agents.adapters.grf.view import (
    OTHER_SLOT,
    ViewConfig,
    encode_observations,
    encode_state,
    initial_headings,
    obs_layout,
    obs_size,
    other_indices,
    state_layout,
    state_size,
    update_headings,
    visible_mask,
)

ORIGIN = np.zeros((1, 2))
PLUS_X = np.array([[1.0, 0.0]])


def _unit(deg: float) -> np.ndarray:
    rad = np.deg2rad(deg)
    return np.array([np.cos(rad), np.sin(rad)])


def _sees(other: np.ndarray, heading: np.ndarray = PLUS_X, pos: np.ndarray = ORIGIN) -> bool:
    mask = visible_mask(pos, heading, np.atleast_2d(other))
    assert mask.shape == (1, 1) and mask.dtype == np.bool_
    return bool(mask[0, 0])


# ----------------------------------------------------------------------------- range
@pytest.mark.parametrize("direction_deg", [0.0, 30.0, -75.0, 100.0])
@pytest.mark.parametrize(
    ("radius", "expected"),
    [(0.84 - 1e-6, True), (0.84, True), (0.84 + 1e-6, False), (1.5, False), (0.0, True)],
)
def test_range_edge(direction_deg: float, radius: float, expected: bool) -> None:
    assert _sees(radius * _unit(direction_deg)) is expected


def test_range_edge_off_origin() -> None:
    pos = np.array([[0.3, -0.1]])
    assert _sees(pos + np.array([0.84, 0.0]), pos=pos)
    assert not _sees(pos + np.array([0.84 + 1e-6, 0.0]), pos=pos)


# ----------------------------------------------------------------------------- cone
@pytest.mark.parametrize("heading_deg", [0.0, 37.0, 180.0, -123.0])
@pytest.mark.parametrize("side", [1.0, -1.0])
@pytest.mark.parametrize(
    ("offset_deg", "expected"),
    [(100.0 - 1e-4, True), (100.0, True), (100.0 + 1e-4, False), (0.0, True), (180.0, False)],
)
def test_cone_edge(heading_deg: float, side: float, offset_deg: float, expected: bool) -> None:
    heading = _unit(heading_deg)[None]
    other = 0.5 * _unit(heading_deg + side * offset_deg)
    assert _sees(other, heading=heading) is expected


def test_behind_is_hidden_until_turning_round() -> None:
    behind = np.array([-0.2, 0.0])
    assert not _sees(behind)
    assert _sees(behind, heading=np.array([[-1.0, 0.0]]))


def test_cone_360_and_infinite_distance() -> None:
    others = np.array([[-0.5, 0.0], [0.0, 0.3], [5.0, 0.0]])
    np.testing.assert_array_equal(
        visible_mask(ORIGIN, PLUS_X, others, 0.84, 360.0), [[True, True, False]]
    )
    np.testing.assert_array_equal(
        visible_mask(ORIGIN, PLUS_X, others, np.inf, 360.0), [[True, True, True]]
    )
    np.testing.assert_array_equal(
        visible_mask(ORIGIN, PLUS_X, others, np.inf, 200.0), [[False, True, True]]
    )


# ----------------------------------------------------------------------------- symmetry
def test_facing_each_other_is_mutual_and_back_to_back_is_blind() -> None:
    pos = np.array([[0.0, 0.0], [0.5, 0.0]])
    facing = np.array([[1.0, 0.0], [-1.0, 0.0]])
    np.testing.assert_array_equal(visible_mask(pos, facing, pos), np.ones((2, 2), bool))
    away = -facing
    np.testing.assert_array_equal(visible_mask(pos, away, pos), np.eye(2, dtype=bool))


def test_visibility_is_invariant_to_rotation_translation_and_mirroring() -> None:
    rng = np.random.default_rng(0)
    pos = rng.uniform(-1, 1, (7, 2))
    heading = update_headings(initial_headings(7), rng.normal(size=(7, 2)))
    others = rng.uniform(-1, 1, (11, 2))
    base = visible_mask(pos, heading, others)
    assert base.any() and not base.all()
    theta = 0.7
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    shift = np.array([0.3, -0.2])
    moved = visible_mask(pos @ rot.T + shift, heading @ rot.T, others @ rot.T + shift)
    np.testing.assert_array_equal(base, moved)
    flip = np.array([1.0, -1.0])
    np.testing.assert_array_equal(base, visible_mask(pos * flip, heading * flip, others * flip))


# ----------------------------------------------------------------------------- headings
def test_initial_heading_is_plus_x() -> None:
    np.testing.assert_array_equal(initial_headings(3), [[1.0, 0.0]] * 3)


def test_heading_follows_movement_and_survives_standing_still() -> None:
    h = initial_headings(2)
    h = update_headings(h, np.array([[0.0, 0.0], [0.0, -0.01]]))
    np.testing.assert_allclose(h, [[1.0, 0.0], [0.0, -1.0]])  # standing keeps +x
    h = update_headings(h, np.array([[-0.006, 0.008], [0.0, 0.0]]))
    np.testing.assert_allclose(h, [[-0.6, 0.8], [0.0, -1.0]])
    h = update_headings(h, np.array([[1e-6, 0.0], [np.nan, 0.0]]), eps=1e-4)
    np.testing.assert_allclose(h, [[-0.6, 0.8], [0.0, -1.0]])  # dust and NaN are ignored
    h3 = update_headings(h, np.array([[0.0, 0.02, 0.5], [0.01, 0.0, -0.3]]))  # z is ignored
    np.testing.assert_allclose(h3, [[0.0, 1.0], [1.0, 0.0]])
    np.testing.assert_allclose(np.linalg.norm(h3, axis=1), 1.0)


def test_update_headings_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="do not match"):
        update_headings(initial_headings(2), np.zeros((3, 2)))


# ----------------------------------------------------------------------------- shapes
def test_vectorised_shapes() -> None:
    rng = np.random.default_rng(1)
    mask = visible_mask(rng.normal(size=(5, 2)), initial_headings(5), rng.normal(size=(9, 2)))
    assert mask.shape == (5, 9) and mask.dtype == np.bool_
    assert visible_mask(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros((4, 2))).shape == (0, 4)
    assert update_headings(np.ones((3, 4, 2)), np.zeros((3, 4, 2))).shape == (3, 4, 2)
    idx = other_indices(4, 2)
    assert idx.shape == (4, 5)
    np.testing.assert_array_equal(idx[0], [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(idx[2], [0, 1, 3, 4, 5])
    assert obs_size(4, 2) == 18 + 5 * 5 == 43 and obs_size(3, 2) == 38
    assert state_size(4, 2) == 7 * 4 + 5 * 2 + 19 == 57
    assert obs_layout(4, 2)["others"].stop == 43 and state_layout(3, 2)["time_left"].stop == 50


# ----------------------------------------------------------------------------- encoders
def _raw(rng: np.random.Generator, n_left: int = 4, n_right: int = 2, **kw: Any) -> dict:
    raw = {
        "left_team": rng.uniform([-1, -0.42], [1, 0.42], (n_left, 2)),
        "left_team_direction": rng.normal(0, 0.01, (n_left, 2)),
        "right_team": rng.uniform([-1, -0.42], [1, 0.42], (n_right, 2)),
        "right_team_direction": rng.normal(0, 0.01, (n_right, 2)),
        "ball": np.array([*rng.uniform([-1, -0.42], [1, 0.42]), 0.1]),
        "ball_direction": rng.normal(0, 0.01, 3),
        "ball_owned_team": -1,
        "ball_owned_player": -1,
        "score": [0, 0],
        "steps_left": 300,
        "game_mode": 0,
    }
    raw.update(kw)
    return raw


def test_observation_layout_by_hand() -> None:
    raw = {
        "left_team": np.array([[0.0, 0.0], [0.5, 0.1], [-0.3, 0.0]]),
        "left_team_direction": np.array([[0.01, 0.0], [0.0, 0.0], [0.0, 0.0]]),
        "right_team": np.array([[0.7, -0.2], [0.9, 0.0]]),
        "right_team_direction": np.array([[-0.01, 0.0], [0.0, 0.01]]),
        "ball": np.array([0.2, 0.05, 0.11]),
        "ball_direction": np.array([0.001, 0.0, -0.002]),
        "ball_owned_team": 0,
        "ball_owned_player": 1,
        "score": [1, 0],
        "steps_left": 100,
        "game_mode": 2,
    }
    headings = initial_headings(3)
    obs = encode_observations(raw, headings)
    lay = obs_layout(3, 2)
    assert obs.shape == (3, obs_size(3, 2)) and obs.dtype == np.float32
    np.testing.assert_allclose(obs[2, lay["self_pos"]], [-0.3, 0.0])
    np.testing.assert_allclose(obs[0, lay["self_dir"]], [0.01, 0.0])
    np.testing.assert_allclose(obs[1, lay["ball_rel"]], [-0.3, -0.05], atol=1e-7)
    np.testing.assert_allclose(obs[:, lay["ball_pos"]], [[0.2, 0.05, 0.11]] * 3)
    np.testing.assert_allclose(obs[:, lay["ball_owner_team"]], [[0, 1, 0]] * 3)
    np.testing.assert_array_equal(obs[:, lay["ball_owned_by_me"]].ravel(), [0, 1, 0])
    others = obs[:, lay["others"]].reshape(3, 4, OTHER_SLOT)
    # agent 0 (origin, +x): teammate 1 at (0.5, 0.1) seen, teammate 2 behind, opponent 0 seen,
    # opponent 1 at distance 0.9 out of range
    np.testing.assert_allclose(others[0, 0], [1, 0.5, 0.1, 0, 0], atol=1e-7)
    np.testing.assert_array_equal(others[0, 1], 0)
    np.testing.assert_allclose(others[0, 2], [1, 0.7, -0.2, -0.01, 0], atol=1e-7)
    np.testing.assert_array_equal(others[0, 3], 0)
    # agent 1 at (0.5, 0.1) facing +x: both teammates are behind it; opponent 1 at 0.41 ahead
    assert others[1, :, 0].tolist() == [0, 0, 1, 1]
    # agent 2 at (-0.3, 0): teammates ahead within range (0.3, 0.81), opponents beyond (1.02, 1.2)
    assert others[2, :, 0].tolist() == [1, 1, 0, 0]
    np.testing.assert_allclose(others[2, 1], [1, 0.8, 0.1, 0, 0], atol=1e-7)
    np.testing.assert_array_equal(others[2, 2:], 0)

    state = encode_state(raw, headings, episode_limit=400)
    sl = state_layout(3, 2)
    assert state.shape == (state_size(3, 2),) and state.dtype == np.float32
    np.testing.assert_allclose(state[sl["left"]].reshape(3, 6)[1], [0.5, 0.1, 0, 0, 1, 0])
    np.testing.assert_allclose(state[sl["right"]].reshape(2, 4)[0], [0.7, -0.2, -0.01, 0])
    np.testing.assert_array_equal(state[sl["ball_owner_player"]], [0, 1, 0, 0, 0])
    np.testing.assert_array_equal(state[sl["score"]], [1, 0])
    np.testing.assert_array_equal(state[sl["game_mode"]], [0, 0, 1, 0, 0, 0, 0])
    np.testing.assert_allclose(state[sl["time_left"]], [0.25])
    raw_opp = {**raw, "ball_owned_team": 1, "ball_owned_player": 1}
    np.testing.assert_array_equal(
        encode_state(raw_opp, headings)[sl["ball_owner_player"]], [0] * 4 + [1]
    )
    np.testing.assert_array_equal(
        encode_observations(raw_opp, headings)[:, lay["ball_owned_by_me"]], 0
    )


def _hidden_spot(rng: np.random.Generator, pos: np.ndarray, heading: np.ndarray) -> np.ndarray:
    """A random pitch position that the observer at ``pos`` facing ``heading`` cannot see."""
    while True:
        cand = rng.uniform([-1, -0.42], [1, 0.42])
        if not visible_mask(pos[None], heading[None], cand[None])[0, 0]:
            return cand


def test_unseen_players_leave_no_trace() -> None:
    """Moving and redirecting players that an agent cannot see never changes its observation."""
    rng = np.random.default_rng(3)
    n_left, n_right = 4, 2
    hidden_total = 0
    for _ in range(150):
        raw = _raw(rng, n_left, n_right)
        headings = update_headings(initial_headings(n_left), rng.normal(size=(n_left, 2)))
        all_pos = np.concatenate([raw["left_team"], raw["right_team"]])
        vis = visible_mask(raw["left_team"], headings, all_pos)
        obs = encode_observations(raw, headings)
        for agent in range(n_left):
            moved = {k: np.array(v, copy=True) for k, v in raw.items()}
            for j in np.flatnonzero(~vis[agent]):
                team, k = ("left", j) if j < n_left else ("right", j - n_left)
                spot = _hidden_spot(rng, raw["left_team"][agent], headings[agent])
                moved[f"{team}_team"][k] = spot
                moved[f"{team}_team_direction"][k] = rng.normal(0, 0.01, 2)
                hidden_total += 1
            again = encode_observations(moved, headings)
            np.testing.assert_array_equal(again[agent], obs[agent])
            # ... whereas moving a *visible* other player does change it
            seen = [j for j in np.flatnonzero(vis[agent]) if j != agent]
            if seen:
                j = seen[0]
                team, k = ("left", j) if j < n_left else ("right", j - n_left)
                moved[f"{team}_team"][k] += 0.01
                assert not np.array_equal(encode_observations(moved, headings)[agent], obs[agent])
    assert hidden_total > 100


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"view_distance": 0.0}, "view_distance"),
        ({"view_distance": -1.0}, "view_distance"),
        ({"view_distance": float("nan")}, "view_distance"),
        ({"view_distance": "far"}, "view_distance"),
        ({"view_cone_deg": 0.0}, "view_cone_deg"),
        ({"view_cone_deg": 361.0}, "view_cone_deg"),
        ({"view_cone_deg": True}, "view_cone_deg"),
        ({"heading_eps": 0.0}, "heading_eps"),
        ({"heading_eps": float("inf")}, "heading_eps"),
    ],
)
def test_view_config_validation(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ViewConfig(**kwargs)


def test_view_config_accepts_full_view() -> None:
    cfg = ViewConfig(view_distance=float("inf"), view_cone_deg=360)
    assert cfg.view_cone_deg == 360


# ----------------------------------------------------------------------------- no gfootball
def test_adapter_without_gfootball_names_the_install_commands(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bdps_agents.adapters import grf

    monkeypatch.setitem(sys.modules, "gfootball", None)  # makes `import gfootball...` fail
    monkeypatch.setitem(sys.modules, "gfootball.env", None)
    with pytest.raises(ImportError) as excinfo:
        grf.GRFParallelEnv("academy_3_vs_1_with_keeper")
    message = str(excinfo.value)
    assert "apt-get install" in message and "libboost-python-dev" in message
    assert "pip install psutil setuptools wheel" in message
    assert 'pip install --no-build-isolation "bdps-agents[grf]"' in message


def test_importing_the_adapter_module_does_not_import_gfootball() -> None:
    code = (
        "import sys, bdps_agents.adapters.grf, bdps_agents.adapters.grf.view; "
        "assert 'gfootball' not in sys.modules and 'gym' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
