"""Tests of ``bdps_agents.algorithms``, the networks and the learners."""
