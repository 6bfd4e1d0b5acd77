"""One registry per kind of plug-in: method, merge operator, suite, backend, executor.

Built-in plug-ins and third-party ones register the same way, through Python entry points
(`atax.methods`, `atax.merges`, ...; ours are declared in pyproject.toml), so there is one
registration path and `harness` never imports `baselines`, `dtm_method` or `suites`.
Entries stay lazy `"module:attr"` strings until first use, so listing names or `atax --help`
does not import torch. `register()` exists for programmatic use (tests, notebooks).

Every plug-in may carry a `version` attribute (default "0"): `plugin_version` reads it, plus the
distribution's version for a third-party plug-in, and the pipeline folds it into the key of every
job the plug-in takes part in, so changing a plug-in's behaviour (and bumping its version) re-runs
what depends on it and nothing else.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, entry_points
from importlib.metadata import version as distribution_version
from typing import Any, Generic, TypeVar

from harness.errors import UserError

T = TypeVar("T")

# Our own plug-ins are versioned by their `version` attributes alone: the distribution's version
# is a fixed string that does not change when their code does.
OWN_DISTRIBUTION = "atax"


@dataclass
class _Entry:
    name: str
    target: Any  # the object, or a lazy "module:attr" string
    origin: str  # distribution name or "code", to say who registered a clashing name
    description: str | None = None

    @property
    def is_lazy(self) -> bool:
        return isinstance(self.target, str)

    def load(self, kind: str) -> Any:
        if self.is_lazy:
            module_name, _, attr = self.target.partition(":")
            try:
                obj: Any = importlib.import_module(module_name)
                for part in attr.split("."):
                    obj = getattr(obj, part)
            except (ImportError, AttributeError) as exc:
                raise UserError(
                    f"{kind} '{self.name}' (registered by {self.origin} as '{self.target}') cannot be "
                    f"loaded: {exc}; reinstall the package that provides it"
                ) from exc
            self.target = obj
        return self.target


class Registry(Generic[T]):
    """Name -> plug-in. Raises on a duplicate name; loads entry points on first access."""

    def __init__(self, kind: str, entry_point_group: str) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._entries: dict[str, _Entry] = {}
        self._entry_points_loaded = False

    def register(self, name: str, target: T | str, *, description: str | None = None,
                 origin: str = "code") -> None:
        """Add `name`; `target` is the object or a lazy "module:attr" string."""
        self._load_entry_points()
        self._add(_Entry(name, target, origin, description))

    def unregister(self, name: str) -> None:
        """Remove `name` (for tests and notebooks that register temporary plug-ins)."""
        self._entries.pop(name, None)

    def get(self, name: str) -> T:
        self._load_entry_points()
        entry = self._entries.get(name)
        if entry is None:
            known = ", ".join(sorted(self._entries)) or "none installed"
            raise UserError(f"unknown {self.kind} '{name}'; known: {known}")
        return entry.load(self.kind)

    def __contains__(self, name: object) -> bool:
        self._load_entry_points()
        return name in self._entries

    def version(self, name: str) -> str:
        """`name`'s code version: its `version` attribute ("0" if it has none), followed by
        `+DIST==X` for a plug-in that another distribution registered (its release changes it)."""
        own = str(getattr(self.get(name), "version", "0"))
        origin = self._entries[name].origin
        if origin in ("code", OWN_DISTRIBUTION, "an unknown distribution"):
            return own
        try:
            return f"{own}+{origin}=={distribution_version(origin)}"
        except PackageNotFoundError:
            return own

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._entries)

    def describe(self) -> list[dict[str, str]]:
        """`[{"name", "description"}]`; imports each plug-in to read its `description`."""
        rows = []
        for name in self.names():
            entry = self._entries[name]
            description = entry.description
            if description is None:
                description = getattr(entry.load(self.kind), "description", "") or ""
            rows.append({"name": name, "description": " ".join(str(description).split())})
        return rows

    def _add(self, entry: _Entry) -> None:
        existing = self._entries.get(entry.name)
        if existing is not None:
            # The same target seen twice (e.g. an editable install visible through two
            # metadata directories) is not a clash; two different targets are.
            if existing.is_lazy and entry.is_lazy and existing.target == entry.target:
                return
            raise UserError(
                f"{self.kind} '{entry.name}' is registered twice: by {existing.origin} and by "
                f"{entry.origin}; uninstall one or register under another name"
            )
        self._entries[entry.name] = entry

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in entry_points(group=self.entry_point_group):
            origin = ep.dist.name if ep.dist is not None else "an unknown distribution"
            self._add(_Entry(ep.name, ep.value, origin))


methods: Registry[Any] = Registry("method", "atax.methods")
merges: Registry[Any] = Registry("merge operator", "atax.merges")
suites: Registry[Any] = Registry("suite", "atax.suites")
backends: Registry[Any] = Registry("backend", "atax.backends")
executors: Registry[Any] = Registry("executor", "atax.executors")
# Training hooks (harness/train/hooks.py).
regularizers: Registry[Any] = Registry("regularizer", "atax.regularizers")
data_transforms: Registry[Any] = Registry("data transform", "atax.data_transforms")
adapters: Registry[Any] = Registry("adapter", "atax.adapters")
auxiliary_losses: Registry[Any] = Registry("auxiliary loss", "atax.auxiliary_losses")

_BY_KIND: dict[str, Registry[Any]] = {
    "method": methods, "merge": merges, "suite": suites, "backend": backends, "executor": executors,
    "regularizer": regularizers, "data_transform": data_transforms, "adapter": adapters,
    "auxiliary_loss": auxiliary_losses}


def plugin_version(kind: str, name: str) -> str:
    """The code version of plug-in `name` of `kind` ("method", "merge", "suite", "backend",
    "regularizer", "data_transform", "adapter", "auxiliary_loss", "executor"); see Registry.version."""
    return _BY_KIND[kind].version(name)
