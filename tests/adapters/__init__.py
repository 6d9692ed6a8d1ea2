"""Tests of ``bdps_agents.adapters``, its adapter packages, the joint env and the vector envs."""
