"""``bdps options [NAME ...]``: the settings of each algorithm's config section (``--set
rode.start_steps=5000``), and of the shared sections, with their defaults and descriptions, read
from the pydantic models that validate them."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pydantic import BaseModel

from bdps_agents.algorithms import algorithm_spec, available_algorithms
from bdps_agents.config import CORE_SECTIONS, ConfigError, ExperimentConfig


def _type_name(annotation: Any) -> str:
    generic = getattr(annotation, "__args__", None) is not None  # list[int], int | None
    text = str(annotation) if generic else getattr(annotation, "__name__", str(annotation))
    return text.replace("typing.", "").replace("NoneType", "None")


def section_options(section: str, model: type[BaseModel]) -> list[str]:
    """One line per field of ``model``: ``section.key (type, default value): description``."""
    lines = []
    for key, info in model.model_fields.items():
        default = info.get_default(call_default_factory=True)
        head = f"  {section}.{key} ({_type_name(info.annotation)}, default {default!r})"
        lines.append(f"{head}: {info.description}" if info.description else head)
    return lines or [f"  (no options of its own: {section} uses the shared sections)"]


def _section_model(name: str) -> tuple[str, type[BaseModel]]:
    """The title and model of an algorithm's section or of a shared section."""
    if name in CORE_SECTIONS:
        annotation = ExperimentConfig.model_fields[name].annotation
        assert isinstance(annotation, type) and issubclass(annotation, BaseModel)
        return f"{name}: {(annotation.__doc__ or '').strip().splitlines()[0]}", annotation
    spec = algorithm_spec(name)  # UnknownAlgorithmError lists the algorithms
    return f"{name} (--algo {name}): {spec.summary}", spec.options


def options_text(names: list[str]) -> str:
    """The options of the sections ``names`` (default: every registered algorithm's)."""
    known = [*available_algorithms(), *CORE_SECTIONS]
    unknown = [name for name in names if name not in known]
    if unknown:
        algorithms, shared = ", ".join(available_algorithms()), ", ".join(CORE_SECTIONS)
        raise ConfigError(
            f"no config section {', '.join(map(repr, unknown))}: name an algorithm "
            f"({algorithms}) or a shared section ({shared})"
        )
    blocks = []
    for name in names or available_algorithms():
        title, model = _section_model(name)
        blocks.append("\n".join([title, *section_options(name, model)]))
    footer = (
        "set them with bdps train --set SECTION.KEY=VALUE, in a scenario YAML's section, or "
        "build_learner(env, algo, SECTION={...}); only the chosen algorithm's section is used"
    )
    return "\n\n".join([*blocks, footer])


def _options(args: argparse.Namespace) -> int:
    sys.stdout.write(options_text(args.names) + "\n")
    return 0


def add_options_command(sub: Any, common: argparse.ArgumentParser) -> None:
    """The ``options`` subcommand of :func:`bdps_agents.cli.build_parser`."""
    o = sub.add_parser(
        "options",
        parents=[common],
        help="each algorithm's own settings (and the shared sections'), with defaults",
    )
    o.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"algorithms or shared sections ({', '.join(CORE_SECTIONS)}); default: every "
        "algorithm",
    )
    o.set_defaults(fn=_options)
