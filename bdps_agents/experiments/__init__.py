"""Experiment grids shipped with the package: ``bdps experiment NAME``, ``bdps reproduce NAME``."""
