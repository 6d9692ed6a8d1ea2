"""Shared test helpers."""

from __future__ import annotations

import copy
from typing import Any

from bdps_agents.config import ExperimentConfig, build_config


def config_with(base: dict[str, Any], **sections: dict[str, Any]) -> ExperimentConfig:
    """``base`` with some sections updated key by key, validated."""
    data = copy.deepcopy(base)
    for key, value in sections.items():
        data.setdefault(key, {}).update(value)
    return build_config(data)
