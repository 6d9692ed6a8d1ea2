"""Experiment files shipped with the package (``bdps experiment NAME`` / ``bdps reproduce NAME``)."""
