"""Tests of ``bdps_agents.training``, the pipeline, the replay and the learner process."""
