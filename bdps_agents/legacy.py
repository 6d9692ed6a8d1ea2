"""Old config spellings, upgraded: before algorithms were registered units,
``network.sharing`` named the method (``bilevel``/``individual`` = BDPS) and ``network.mixer``
chose QMIX's or VDN's mixer. Configs, experiment files and checkpoints written then still load.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

# the spellings before algorithms were registered units (network.sharing named the method)
LEGACY_SHARING = {"bilevel": 2, "individual": 1}  # -> algorithm.name=bdps, bdps.levels=...


def upgrade_legacy_config(data: dict[str, Any], warn: bool = True) -> dict[str, Any]:
    """A config dict in the pre-registry spelling, rewritten: ``network.sharing: bilevel`` /
    ``individual`` -> ``algorithm.name: bdps`` with ``bdps.levels: 2`` / ``1`` and sharing by
    roles; ``network.mixer`` dropped (``qmix``: the mixer every built-in algorithm but VDN
    uses; ``vdn``: ``algorithm.name: vdn``). ``warn``: say so in a ``FutureWarning``
    (checkpoints written before the change are read quietly). Contradictions raise
    ``ValueError``."""
    network = data.get("network")
    if not isinstance(network, dict):
        return data
    sharing, mixer = network.get("sharing"), network.get("mixer")
    if sharing not in LEGACY_SHARING and "mixer" not in network:
        return data
    data = copy.deepcopy(data)
    network, notes = data["network"], []
    algorithm = data.setdefault("algorithm", {})
    if not isinstance(algorithm, dict):
        return data  # reported by validation
    if sharing in LEGACY_SHARING:
        levels = LEGACY_SHARING[sharing]
        if algorithm.setdefault("name", "bdps") != "bdps":
            raise ValueError(
                f"network.sharing={sharing} (BDPS) contradicts algorithm.name="
                f"{algorithm['name']}: drop network.sharing"
            )
        section = data.setdefault("bdps", {})
        if isinstance(section, dict) and section.setdefault("levels", levels) != levels:
            raise ValueError(
                f"network.sharing={sharing} contradicts bdps.levels={section['levels']}"
            )
        network["sharing"] = "roles"
        notes.append(f"network.sharing={sharing} is now algorithm.name=bdps, bdps.levels={levels}")
    if "mixer" in network:
        del network["mixer"]
        if mixer == "vdn":
            if algorithm.setdefault("name", "vdn") != "vdn":
                raise ValueError(
                    f"network.mixer=vdn: algorithm {algorithm['name']!r} chooses its own mixer; "
                    "for VDN use algorithm.name=vdn (--algo vdn)"
                )
            notes.append("network.mixer=vdn is now algorithm.name=vdn (--algo vdn)")
        elif mixer != "qmix":
            raise ValueError(f"network.mixer={mixer!r} is gone: choose --algo qmix or vdn")
        else:
            notes.append("network.mixer is gone (QMIX mixes; --algo vdn for VDN): drop it")
    if warn and notes:
        warnings.warn("old config spelling: " + "; ".join(notes), FutureWarning, stacklevel=2)
    return data
