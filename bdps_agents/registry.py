"""A name -> object registry with lazy ``"module:attr"`` targets and entry-point discovery.

One mechanism for the two extension points, environment adapters
(:mod:`bdps_agents.adapters`, entry-point group ``bdps_agents.adapters``) and algorithms
(:mod:`bdps_agents.algorithms`, group ``bdps_agents.algorithms``):

* built-ins are registered as ``"module:attr"`` strings, imported on first use, so that listing
  names imports no simulator and no torch;
* :meth:`Registry.register` adds an object or a string at run time;
* third-party packages declare ``name = "package.module:attr"`` in the entry-point group; they
  are read on the first lookup, and names registered explicitly win over them.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import warnings
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError, ValueError):
    """No entry is registered under the requested name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class RegistryLoadError(ImportError):
    """A registered ``"module:attr"`` target or entry point could not be loaded."""


def load_target(target: str) -> Any:
    """The object a ``"module:attr.sub"`` string names (imports the module)."""
    module_name, sep, attr_path = target.partition(":")
    if not sep or not module_name or not attr_path:
        raise RegistryLoadError(f"target {target!r} is not of the form 'module:attr'")
    obj: Any = importlib.import_module(module_name)
    for attr in attr_path.split("."):
        obj = getattr(obj, attr)
    return obj


class Registry(Generic[T]):
    """Name -> object map with lazy targets and entry-point discovery (one per process).

    ``kind`` names the entries in messages ("environment adapter", "algorithm"); ``check``
    validates a loaded object (raising ``TypeError`` with the reason); ``load_error`` and
    ``unknown_error`` are the exception types raised (subclasses of the module's own)."""

    def __init__(
        self,
        kind: str,
        builtins: dict[str, str | T] | None = None,
        *,
        entry_point_group: str | None = None,
        check: Callable[[str, Any], T] | None = None,
        load_error: type[RegistryLoadError] = RegistryLoadError,
        unknown_error: type[UnknownNameError] = UnknownNameError,
    ) -> None:
        self.kind = kind
        self._entries: dict[str, str | T] = dict(builtins or {})
        self._entry_points: dict[str, importlib.metadata.EntryPoint] = {}
        self._group = entry_point_group
        self._discovered = entry_point_group is None
        self._check = check
        self._load_error, self._unknown_error = load_error, unknown_error

    def register(self, name: str, entry: str | T, *, overwrite: bool = False) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")
        if name in self._entries and not overwrite:
            raise ValueError(
                f"an {self.kind} named {name!r} is already registered; pass overwrite=True to "
                "replace it"
            )
        self._entries[name] = entry

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)
        self._entry_points.pop(name, None)

    def _discover(self) -> None:
        if self._discovered or self._group is None:
            return
        self._discovered = True
        # looked up through the module attribute so that tests can substitute it
        for ep in importlib.metadata.entry_points(group=self._group):
            if ep.name in self._entries or ep.name in self._entry_points:
                warnings.warn(
                    f"entry point {ep.name!r} = {ep.value!r} in group {self._group!r} is ignored: "
                    f"an {self.kind} of that name is already registered",
                    stacklevel=3,
                )
                continue
            self._entry_points[ep.name] = ep

    def names(self) -> list[str]:
        self._discover()
        return sorted({*self._entries, *self._entry_points})

    def __contains__(self, name: object) -> bool:
        return name in self.names()

    def target(self, name: str) -> str | None:
        """The ``"module:attr"`` string of a not yet loaded entry, else None."""
        self._discover()
        entry = self._entries.get(name)
        if isinstance(entry, str):
            return entry
        ep = self._entry_points.get(name)
        return ep.value if ep is not None else None

    def get(self, name: str) -> T:
        self._discover()
        if name in self._entries:
            entry = self._entries[name]
            if isinstance(entry, str):
                try:
                    loaded = load_target(entry)
                except (ImportError, AttributeError) as exc:
                    raise self._load_error(
                        f"{self.kind} {name!r} could not be loaded from {entry!r}: {exc}"
                    ) from exc
                entry = self._checked(name, loaded, f"{entry!r}")
                self._entries[name] = entry
            return entry
        if name in self._entry_points:
            ep = self._entry_points[name]
            try:
                loaded = ep.load()
            except Exception as exc:  # any import-time failure of third-party code
                raise self._load_error(
                    f"entry point {ep.name!r} = {ep.value!r} (group {self._group!r}) "
                    f"failed to load: {type(exc).__name__}: {exc}"
                ) from exc
            entry = self._checked(name, loaded, f"entry point {ep.name!r} = {ep.value!r}")
            self._entries[name] = entry
            del self._entry_points[name]
            return entry
        raise self._unknown_error(
            f"unknown {self.kind} {name!r}; known {self.kind}s: {', '.join(self.names())}"
        )

    def _checked(self, name: str, loaded: Any, origin: str) -> T:
        if self._check is None:
            return loaded
        try:
            return self._check(name, loaded)
        except TypeError as err:
            raise self._load_error(f"{origin} is not a valid {self.kind}: {err}") from None
