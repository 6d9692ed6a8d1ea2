"""Tests of ``bdps_agents.config`` and the presets."""
