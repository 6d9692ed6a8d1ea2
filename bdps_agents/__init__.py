"""bdps-agents: BDPS and recurrent QMIX for cooperative multi-agent RL on Tianshou 2.0.1.

Main entry points (imported lazily so that ``import bdps_agents`` stays cheap):

- :class:`bdps_agents.joint_env.JointEnv` — any PettingZoo parallel env as one Tianshou env
- :func:`bdps_agents.adapters.make_env` — LBF (and later SMAC, SMAX, GRF) as PettingZoo envs
- :class:`bdps_agents.policy.MultiAgentQPolicy`, :class:`bdps_agents.qmix.QMIX`,
  :class:`bdps_agents.replay.EpisodeReplayBuffer` — the Tianshou policy / algorithm / buffer
- :func:`bdps_agents.training.train` and the ``bdps`` CLI
"""

__version__ = "0.1.0"
