"""Episode GIFs from a checkpoint, and single frames of LBF, GRF and SMAX."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from bdps_agents.adapters.lbf.render import draw_lbf_frame
from bdps_agents.joint_env import make_joint_env
from bdps_agents.render import draw_frame, frame_kind, render_episode
from bdps_agents.training import train

EPISODE = 12
# the food's level (5) is above the two players' summed levels (at most 4): it can never be
# loaded, so every episode runs exactly EPISODE steps and the frame count is known
TINY = {
    "env": {
        "adapter": "lbf",
        "kwargs": {
            "task": "6x6-2p-1f",
            "max_episode_steps": EPISODE,
            "min_food_level": 5,
            "max_food_level": 5,
        },
        "num_train_envs": 2,
        "num_test_envs": 2,
    },
    "replay": {"capacity_episodes": 50, "batch_episodes": 4, "warmup_episodes": 4},
    "algorithm": {"name": "bdps"},  # BDPS: frames label roles/groups
    "network": {"hidden_dim": 16},
    "bdps": {"role_interval": 3, "group_interval_multiple": 2},
    "training": {
        "progress": False,
        "test_episodes": 2,
        "total_steps": 300,
        "test_interval": 150,
        "steps_per_update": 10,
        "log_interval": 50,
    },
}


@pytest.fixture(scope="module")
def checkpoint(config_with, tmp_path_factory):
    torch.set_num_threads(1)
    return train(config_with(TINY), tmp_path_factory.mktemp("run")).checkpoint


def _frames(path) -> int:
    with Image.open(path) as gif:
        assert gif.format == "GIF"
        return gif.n_frames


def test_render_episode_writes_one_frame_per_step(checkpoint, tmp_path):
    out = render_episode(checkpoint, tmp_path / "gifs" / "ep.gif", seed=3)
    assert out == tmp_path / "gifs" / "ep.gif"
    assert _frames(out) == EPISODE + 1  # the reset frame and one per step


def test_render_episode_stops_at_max_steps(checkpoint, tmp_path):
    out = render_episode(checkpoint, tmp_path / "short.gif", max_steps=4, greedy=False, fps=8)
    assert _frames(out) == 5


def test_render_refuses_missing_or_foreign_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError):
        render_episode(tmp_path / "nope.pt", tmp_path / "ep.gif")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": 1}, foreign)
    with pytest.raises(ValueError, match="not a bdps-agents checkpoint"):
        render_episode(foreign, tmp_path / "ep.gif")
    assert not (tmp_path / "ep.gif").exists()


def test_unsupported_env_is_refused():
    with pytest.raises(
        NotImplementedError, match="names no frame_drawer. Give its class frame_drawer"
    ):
        frame_kind(object())


def test_lbf_frame_shows_players_and_food():
    env = make_joint_env("lbf", task="8x8-3p-2f")
    env.reset(seed=0)
    assert frame_kind(env) == "lbf"
    ax = Figure().add_subplot()
    artists = draw_lbf_frame(ax, env, roles=np.array([0, 1, 1]))
    assert len(artists["players"]) == 3
    assert len(artists["food"]) == np.count_nonzero(env.env.foraging_env.field) == 2
    texts = [t.get_text() for t in ax.texts]
    assert "a1 r1" in texts


@pytest.mark.requires(module="gfootball", extra="grf")
def test_grf_frame_shows_both_teams_and_the_ball():
    env = make_joint_env("grf", env_name="academy_3_vs_1_with_keeper")
    try:
        env.reset(seed=0)
        for _ in range(5):  # the three attackers run right, the keeper stays
            env.step(np.array([0, 5, 5, 5]))
        assert frame_kind(env) == "grf"
        from bdps_agents.adapters.grf.render import draw_grf_frame

        ax = Figure().add_subplot()
        artists = draw_grf_frame(ax, env)
        assert len(artists["left"]) == 4 and len(artists["right"]) == 2
        raw = env.env.raw_observation
        np.testing.assert_allclose(artists["ball"].center, raw["ball"][:2])
        labels = {t.get_text() for t in ax.texts}
        assert labels == {f"agent_{i}" for i in range(4)}
        cones = [p for p in ax.patches if type(p).__name__ == "Wedge"]
        assert len(cones) == 4  # one view cone per agent
    finally:
        env.close()


@pytest.mark.requires(module="jaxmarl", extra="smax")
def test_smax_frame_shows_living_units():
    env = make_joint_env("smax", map_name="3m")
    _obs, _ = env.reset(seed=0)
    assert frame_kind(env) == "smax"
    ax = Figure().add_subplot()
    artists = draw_frame(ax, env, "3m", roles=np.array([0, 1, 0]))
    assert len(artists["allies"]) == 3 and len(artists["enemies"]) == 3
    assert ax.get_title() == "3m"
