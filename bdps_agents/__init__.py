"""bdps-agents: BDPS and its baselines (QMIX, VDN, RODE, SePS, CDS, EOI) for cooperative
multi-agent RL on Tianshou 2.0.1.

Main entry points (imported lazily so that ``import bdps_agents`` stays cheap):

- :class:`bdps_agents.joint_env.JointEnv` — any PettingZoo parallel env as one Tianshou env
- :func:`bdps_agents.adapters.make_env` — LBF, SMAC, SMAX and GRF as PettingZoo envs
- :mod:`bdps_agents.algorithms` — the registered algorithms (``qmix``, ``vdn``, ``bdps``,
  ``rode``, ``seps``, ``cds``, ``eoi``; ``available_algorithms()`` lists them), each a Tianshou
  algorithm on the shared ``ValueDecomposition`` learner
- :func:`bdps_agents.pipeline.build_learner` — any of them for a plain Tianshou script
- :func:`bdps_agents.training.train` and the ``bdps`` CLI
"""

__version__ = "0.1.0"
