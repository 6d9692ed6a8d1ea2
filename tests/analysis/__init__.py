"""Tests of experiment grids, figures and rendering (``experiment``, ``grid``, ``plotting``,
``render``)."""
