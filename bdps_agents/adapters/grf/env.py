"""Google Research Football (``gfootball`` 2.10.2) as a PettingZoo parallel env, with the paper's
Dec-POMDP view (Sec. 4.1, App. A.2).

Conventions (see :mod:`bdps_agents.adapters.base`):

* the algorithm controls the **whole left team**: agents ``"agent_0" .. "agent_{N-1}"`` are the
  left players in gfootball's index order (``agent_0`` is the goalkeeper in the academies; 4
  agents in ``academy_3_vs_1_with_keeper``, 3 in ``academy_pass_and_shoot_with_keeper``). No
  built-in AI moves them; the right team is gfootball's built-in AI;
* actions: gfootball's 19 default actions (:data:`ACTION_NAMES`), always all available (the
  action mask is all ones, so ``infos[agent]["action_replaced"]`` is always ``False``),
  ``noop_action = 0`` (idle);
* observations: :func:`bdps_agents.adapters.grf.view.encode_observations` (own state and the
  ball always; other players only within ``view_distance`` and the ``view_cone_deg`` forward
  cone around the agent's movement heading). ``state()``: the full view,
  :func:`bdps_agents.adapters.grf.view.encode_state`;
* rewards: gfootball's per-player rewards (``'scoring'``: +-1 to every player on a goal;
  ``'checkpoints'``: +0.1 per distance checkpoint to the player carrying the ball, the remaining
  checkpoints paid out on scoring), one per agent; :class:`~bdps_agents.joint_env.JointEnv`
  aggregates them;
* ``truncations`` when the episode ends because time ran out (``steps_left == 0`` without a goal
  on that step), ``terminations`` when it ends for any other reason (goal, ball out of play,
  possession change in the academies);
* ``episode_limit`` = the scenario's ``game_duration + 1``: gfootball reports ``steps_left =
  game_duration + 1`` after reset and runs that many steps (401 in the academies);
* ``metric_keys = ("goal_score", "score_reward", "goals_for", "goals_against")``, all floats and
  cumulative over the episode: ``goal_score`` is 1.0 once the left team has scored (its episode
  mean is the scoring rate), ``score_reward`` the goal difference (the sum of gfootball's scoring
  reward), ``goals_for`` / ``goals_against`` the goals of each side.

Seeding: gfootball re-seeds its engine from the config value ``game_engine_random_seed`` at every
reset (so every episode of a gfootball env with a fixed seed starts from the same randomness) and
derives ``reverse_team_processing`` from the seed's parity once. ``reset(seed=s)`` sets both (the
seed reduced modulo ``2**31``) before resetting, which reproduces exactly a freshly created env
with ``game_engine_random_seed=s`` (measured; no re-creation needed). ``reset()`` without a seed
draws the engine seed from a generator seeded by the last given seed, so successive episodes
differ but the sequence is reproducible; the very first ``reset()`` of an env constructed with
``seed=s`` uses ``s`` itself (the same episode as ``reset(seed=s)``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar

import gymnasium
import numpy as np

from bdps_agents.adapters.base import ACTION_REPLACED, MultiAgentEnvAdapter, StepResult
from bdps_agents.adapters.grf.view import (
    N_GAME_MODES,
    OTHER_SLOT,
    ViewConfig,
    encode_observations,
    encode_state,
    initial_headings,
    obs_layout,
    state_layout,
    update_headings,
    visible_mask,
)

__all__ = ["ACTION_NAMES", "GRF_INSTALL_HINT", "GRFParallelEnv"]

#: gfootball's default action set, in action-index order.
ACTION_NAMES: tuple[str, ...] = (
    "idle",
    "left",
    "top_left",
    "top",
    "top_right",
    "right",
    "bottom_right",
    "bottom",
    "bottom_left",
    "long_pass",
    "high_pass",
    "short_pass",
    "shot",
    "sprint",
    "release_direction",
    "release_sprint",
    "sliding",
    "dribble",
    "release_dribble",
)
N_ACTIONS = len(ACTION_NAMES)

GRF_INSTALL_HINT = (
    "The 'grf' adapter needs Google Research Football (gfootball 2.10.2), which is built from "
    "source (Python 3.11; Debian/Ubuntu packages shown). Install it with:\n"
    "  apt-get update && apt-get install -y --no-install-recommends libsdl2-dev "
    "libsdl2-image-dev libsdl2-ttf-dev libsdl2-gfx-dev libboost-python-dev "
    "libboost-thread-dev libboost-system-dev libboost-filesystem-dev libgl1-mesa-dev "
    "libegl-dev cmake build-essential\n"
    "  pip install psutil setuptools wheel\n"
    '  pip install --no-build-isolation "bdps-agents[grf]"\n'
    '(from a checkout: pip install --no-build-isolation -e ".[grf]"). Run pip inside the '
    "activated virtual environment: gfootball's build calls the `python3` found on PATH, which "
    "must see psutil."
)

_VALID_REWARDS = ("scoring", "checkpoints")
_SCENARIO_RE = re.compile(r"[A-Za-z0-9_]+")
_SEED_MOD = 2**31


def _import_gfootball() -> Any:
    """``gfootball.env``, imported on first use; ImportError with the install recipe if absent."""
    try:
        # gym 0.25 prints an "unmaintained" notice to stderr on import; it is noise here.
        with contextlib.redirect_stderr(io.StringIO()):
            import gfootball.env as football_env
    except ImportError as exc:
        raise ImportError(f"{GRF_INSTALL_HINT}\n(import failed: {exc})") from exc
    return football_env


def _check_seed(name: str, seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {seed!r}")
    return int(seed)


class GRFParallelEnv(MultiAgentEnvAdapter):
    """A gfootball scenario with the whole left team controlled and the paper's partial view.

    Args:
        env_name: gfootball scenario (a module of ``gfootball.scenarios``), e.g.
            ``"academy_3_vs_1_with_keeper"`` or ``"academy_pass_and_shoot_with_keeper"``.
        view_distance: how far an agent sees other players (pitch units, inclusive; ``inf`` for
            no limit). The paper: 0.84.
        view_cone_deg: opening angle of the forward view cone, in ``(0, 360]`` (360: no cone).
            The paper: 200.
        seed: engine seed of the first episode when ``reset()`` is called without a seed.
        rewards: gfootball's reward spec: ``"scoring"`` or ``"scoring,checkpoints"``.
        heading_eps: movement vectors shorter than this keep the previous heading.

    Raises ``ValueError`` for bad arguments and ``ImportError`` (with the install commands) when
    gfootball is missing.
    """

    metadata: ClassVar[dict[str, Any]] = {
        "name": "grf_v0",
        "render_modes": [],
        "is_parallelizable": True,
    }
    noop_action = 0
    metric_keys: tuple[str, ...] = ("goal_score", "score_reward", "goals_for", "goals_against")
    frame_drawer = "bdps_agents.adapters.grf.render:DRAWER"

    def __init__(
        self,
        env_name: str = "academy_3_vs_1_with_keeper",
        view_distance: float = 0.84,
        view_cone_deg: float = 200.0,
        seed: int = 0,
        rewards: str = "scoring,checkpoints",
        *,
        heading_eps: float = 1e-4,
    ) -> None:
        if not isinstance(env_name, str) or not _SCENARIO_RE.fullmatch(env_name):
            raise ValueError(f"env_name must be a gfootball scenario name, got {env_name!r}")
        self.view = ViewConfig(
            view_distance=view_distance, view_cone_deg=view_cone_deg, heading_eps=heading_eps
        )
        seed = _check_seed("seed", seed)
        if not isinstance(rewards, str):
            raise ValueError(
                f"rewards must be a string such as 'scoring,checkpoints', got {rewards!r}"
            )
        parts = [p.strip() for p in rewards.split(",")]
        unknown = [p for p in parts if p not in _VALID_REWARDS]
        if unknown or "scoring" not in parts or len(set(parts)) != len(parts):
            raise ValueError(
                f"rewards must be 'scoring' or 'scoring,checkpoints' (gfootball always pays the "
                f"scoring reward), got {rewards!r}"
            )

        football_env = _import_gfootball()
        if importlib.util.find_spec(f"gfootball.scenarios.{env_name}") is None:
            raise ValueError(
                f"unknown gfootball scenario {env_name!r}; see the modules of gfootball.scenarios "
                "(e.g. 'academy_3_vs_1_with_keeper', 'academy_pass_and_shoot_with_keeper')"
            )
        from gfootball.env import config as football_config

        scenario = football_config.Config({"level": env_name}).ScenarioConfig()
        n_left, n_right = len(scenario.left_team), len(scenario.right_team)
        if scenario.controllable_left_players != n_left:
            raise ValueError(
                f"scenario {env_name!r} has {n_left} left players of which only "
                f"{scenario.controllable_left_players} are controllable; the adapter controls the "
                "whole left team"
            )

        self.env_name = env_name
        self.rewards = ",".join(parts)
        self.initial_seed = seed
        self.n_left, self.n_right = n_left, n_right
        self.game_duration = int(scenario.game_duration)
        self.episode_limit = self.game_duration + 1
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*old step API.*")
            self._env = football_env.create_environment(
                env_name=env_name,
                representation="raw",
                number_of_left_players_agent_controls=n_left,
                rewards=self.rewards,
                render=False,
                other_config_options={"game_engine_random_seed": seed % _SEED_MOD},
            )
        self._engine_seed = seed % _SEED_MOD  # the seed gfootball's config currently holds
        self._next_engine_seed = seed % _SEED_MOD
        self._rng = np.random.default_rng(seed)

        self.possible_agents = [f"agent_{i}" for i in range(n_left)]
        self.agents = []
        self.action_spaces = {a: gymnasium.spaces.Discrete(N_ACTIONS) for a in self.possible_agents}
        self._obs_space = self._make_obs_space()
        self.observation_spaces = dict.fromkeys(self.possible_agents, self._obs_space)
        self.state_space = self._make_state_space()
        self._mask = np.ones(N_ACTIONS, dtype=np.int8)
        self._raw: dict[str, Any] | None = None
        self._headings = initial_headings(n_left)
        self._visible = np.zeros((n_left, n_left + n_right), dtype=bool)
        self._metrics: dict[str, float] = dict.fromkeys(self.metric_keys, 0.0)

    # ------------------------------------------------------------------ spaces
    def _make_obs_space(self) -> gymnasium.spaces.Box:
        layout = obs_layout(self.n_left, self.n_right)
        size = layout["others"].stop
        low = np.full(size, -np.inf, dtype=np.float32)
        high = np.full(size, np.inf, dtype=np.float32)
        low[layout["self_heading"]], high[layout["self_heading"]] = -1.0, 1.0
        for name in ("ball_owner_team", "ball_owned_by_me"):
            low[layout[name]], high[layout[name]] = 0.0, 1.0
        flags = np.arange(layout["others"].start, size, OTHER_SLOT)
        low[flags], high[flags] = 0.0, 1.0
        return gymnasium.spaces.Box(low, high, dtype=np.float32)

    def _make_state_space(self) -> gymnasium.spaces.Box:
        layout = state_layout(self.n_left, self.n_right)
        size = layout["time_left"].stop
        low = np.full(size, -np.inf, dtype=np.float32)
        high = np.full(size, np.inf, dtype=np.float32)
        headings = np.arange(layout["left"].start, layout["left"].stop).reshape(self.n_left, 6)
        low[headings[:, 4:]], high[headings[:, 4:]] = -1.0, 1.0
        for name in ("ball_owner_team", "ball_owner_player", "game_mode", "time_left"):
            low[layout[name]], high[layout[name]] = 0.0, 1.0
        low[layout["score"]] = 0.0
        assert layout["game_mode"].stop - layout["game_mode"].start == N_GAME_MODES
        return gymnasium.spaces.Box(low, high, dtype=np.float32)

    # ------------------------------------------------------------------ accessors
    @property
    def football_env(self) -> Any:
        """The wrapped gfootball env (read it; do not step or reset it directly)."""
        return self._env

    @property
    def raw_observation(self) -> dict[str, Any]:
        """The current raw gfootball observation (team-level fields; a shared dict, do not edit)."""
        if self._raw is None:
            raise RuntimeError("no observation before the first reset()")
        return self._raw

    @property
    def headings(self) -> np.ndarray:
        """``(n_left, 2)`` current unit headings of the left players (a copy)."""
        return self._headings.copy()

    @property
    def visibility(self) -> np.ndarray:
        """``(n_left, n_left + n_right)`` bool: which players (left then right) each agent sees
        now (by geometry; the agent's own column is included but unused). A copy."""
        return self._visible.copy()

    # ------------------------------------------------------------------ PettingZoo API
    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        if seed is not None:
            seed = _check_seed("seed", seed)
            self._rng = np.random.default_rng(seed)
            engine_seed = seed % _SEED_MOD
        else:
            engine_seed = self._next_engine_seed
        self._next_engine_seed = int(self._rng.integers(_SEED_MOD))
        if engine_seed != self._engine_seed:
            # gfootball reads both at every reset (see the module docstring).
            self._env.unwrapped._config.update(
                {
                    "game_engine_random_seed": engine_seed,
                    "reverse_team_processing": bool(engine_seed % 2),
                }
            )
            self._engine_seed = engine_seed
        raw_list = self._env.reset()
        self._headings = initial_headings(self.n_left)
        self._metrics = dict.fromkeys(self.metric_keys, 0.0)
        self.agents = list(self.possible_agents)
        self._update(raw_list)
        return self._observations(), self._infos()

    def step(self, actions: Mapping[str, Any]) -> StepResult:
        joint = self._validate_actions(actions)
        # gfootball's i-th action / reward / observation is the i-th controlled player's; with
        # the whole team controlled that is player i (checked in _update via 'active').
        raw_list, reward, done, _ = self._env.step([joint[a] for a in self.possible_agents])
        assert self._raw is not None  # set by reset(); _validate_actions refuses a step before
        prev_score = tuple(self._raw["score"])
        self._update(raw_list)
        score = self._raw["score"]
        goal = score[0] != prev_score[0] or score[1] != prev_score[1]
        truncated = bool(done and int(self._raw["steps_left"]) <= 0 and not goal)
        terminated = bool(done and not truncated)
        rewards = np.asarray(reward, dtype=np.float64).reshape(-1)
        agents = list(self.agents)
        observations, infos = self._observations(), self._infos()
        if done:
            self.agents = []
        return (
            observations,
            {a: float(rewards[i]) for i, a in enumerate(self.possible_agents) if a in agents},
            dict.fromkeys(agents, terminated),
            dict.fromkeys(agents, truncated),
            infos,
        )

    def state(self) -> np.ndarray:
        """The full-information global state (:func:`~bdps_agents.adapters.grf.view.encode_state`:
        all players' positions and movement, left headings, ball, owner, score, game mode, time
        left), float32."""
        if self._raw is None:
            raise RuntimeError("state() is undefined before the first reset()")
        return encode_state(self._raw, self._headings, self.episode_limit)

    def render(self) -> None:
        gymnasium.logger.warn("GRFParallelEnv does not render (gfootball is built headless here)")

    def close(self) -> None:
        self._env.close()

    # ------------------------------------------------------------------ helpers
    def _update(self, raw_list: list[dict[str, Any]]) -> None:
        if len(raw_list) != self.n_left:
            raise RuntimeError(
                f"gfootball returned {len(raw_list)} observations, not {self.n_left}"
            )
        active = [int(o["active"]) for o in raw_list]
        if active != list(range(self.n_left)):
            raise RuntimeError(
                f"gfootball assigned controlled players {active}; expected 0..{self.n_left - 1}"
            )
        raw = raw_list[0]
        self._raw = raw
        self._headings = update_headings(
            self._headings, raw["left_team_direction"], self.view.heading_eps
        )
        left = np.asarray(raw["left_team"])
        everyone = np.concatenate([left, np.asarray(raw["right_team"])])
        self._visible = visible_mask(
            left, self._headings, everyone, self.view.view_distance, self.view.view_cone_deg
        )
        goals_for, goals_against = float(raw["score"][0]), float(raw["score"][1])
        self._metrics = {
            "goal_score": 1.0 if goals_for > 0 else 0.0,
            "score_reward": goals_for - goals_against,
            "goals_for": goals_for,
            "goals_against": goals_against,
        }

    def _observations(self) -> dict[str, np.ndarray]:
        if self._raw is None:
            raise RuntimeError("no observation before reset()")
        obs = encode_observations(self._raw, self._headings, self.view, self._visible)
        return {a: obs[i] for i, a in enumerate(self.possible_agents) if a in self.agents}

    def _infos(self) -> dict[str, dict[str, Any]]:
        return {
            a: {"action_mask": self._mask.copy(), **self._metrics, ACTION_REPLACED: False}
            for a in self.possible_agents
            if a in self.agents
        }
