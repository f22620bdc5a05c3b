"""One registry of named parts: envs, agents, attacks, training loops and datasets.

Entries are filled explicitly by :func:`rlkit.catalog.register_builtins` (run once by
``import rlkit``), never by the import order of other modules. Factories and parameter models may
be given as ``"module:attribute"`` strings so that listing and validating names does not import
heavy dependencies (pandapower, torch, ...). A name of the form ``"package.module:Class"`` is a
plug-in by class path: the registry's ``plugin`` hook turns the class into an entry.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any


class UnknownNameError(KeyError):
    """Raised when a registry lookup fails; the message lists close matches and allowed names."""

    def __init__(self, kind: str, name: str, allowed: Iterable[str], note: str = "") -> None:
        self.kind, self.name, self.allowed = kind, name, sorted(allowed)
        super().__init__(unknown_name_message(kind, name, self.allowed) + note)

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def close_matches(name: str, allowed: Iterable[str], n: int = 3) -> list[str]:
    """Return up to ``n`` entries of ``allowed`` that look like a misspelling of ``name``.

    :param name: the name that was given.
    :param allowed: the names that exist.
    :param n: how many suggestions at most.
    """
    return difflib.get_close_matches(name, list(allowed), n=n, cutoff=0.6)


def unknown_name_message(kind: str, name: str, allowed: Iterable[str]) -> str:
    """Build "unknown <kind> 'x' (did you mean 'y'?); allowed: ..." for error messages.

    :param kind: what was looked up, e.g. "agent".
    :param name: the name that was given.
    :param allowed: the names that exist.
    """
    allowed = sorted(allowed)
    hint = close_matches(name, allowed)
    did_you_mean = f" (did you mean {', '.join(repr(h) for h in hint)}?)" if hint else ""
    return f"unknown {kind} {name!r}{did_you_mean}; allowed: {', '.join(allowed)}"


def resolve(target: Any) -> Any:
    """Import ``"package.module:attr"`` strings; return any other object unchanged.

    :param target: a ``"module:attr"`` string or any object.
    """
    if not isinstance(target, str):
        return target
    module_name, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split(".") if attr else []:
        obj = getattr(obj, part)
    return obj


def is_class_path(name: str) -> bool:
    """True for ``"package.module:Attribute"`` (a plug-in given by its import path).

    :param name: a registry name or class path.
    """
    module, sep, attr = name.partition(":")
    return bool(sep and module and attr) and all(p.isidentifier() for p in module.split("."))


@dataclass
class Entry:
    """A registered part.

    :param name: the name used in configs and on the command line.
    :param factory: a callable (or ``"module:attr"``) building the part.
    :param description: one line shown by ``rlkit info``.
    :param params: a pydantic model of the part's parameters, a ``"module:attr"`` string naming
        one, or a zero-argument callable returning one (resolved on first use).
    :param extra: facts about the entry (an agent's ``loop`` and ``action_spaces``, ...).
    """

    name: str
    factory: Any
    description: str
    params: Any = None
    extra: dict[str, Any] = field(default_factory=dict)
    _model: Any = field(default=None, repr=False)

    def build(self, *args: Any, **kwargs: Any) -> Any:
        """Call the factory (importing it first if it was registered as a string).

        :param args: positional arguments of the factory.
        :param kwargs: keyword arguments of the factory.
        """
        return resolve(self.factory)(*args, **kwargs)

    def params_model(self) -> Any:
        """The pydantic model of this entry's parameters, or None."""
        if self._model is None and self.params is not None:
            target = resolve(self.params)
            self._model = target if isinstance(target, type) else target()
        return self._model


class Registry:
    """Maps names to entries for one kind of part.

    :param kind: the kind ("env", "agent", ...), used in messages.
    :param plugin: optional ``hook(kind, class_path, obj) -> Entry`` turning an imported
        class-path plug-in into an entry.
    """

    def __init__(self, kind: str, plugin: Callable[[str, Any], Entry] | None = None) -> None:
        self.kind = kind
        self.plugin = plugin
        self._entries: dict[str, Entry] = {}

    def register(
        self, name: str, factory: Any, description: str, params: Any = None, **extra: Any
    ) -> Entry:
        """Register ``factory`` under ``name`` and return the entry.

        :param name: the name used in configs and on the command line.
        :param factory: a callable or an ``"module:attr"`` string.
        :param description: one line shown by ``rlkit info``.
        :param params: pydantic model (or ``"module:attr"``, or a callable returning one).
        :param extra: facts about the entry (e.g. ``loop="online"``).
        """
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        entry = Entry(name, factory, description, params, dict(extra))
        self._entries[name] = entry
        return entry

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str) -> Entry:
        """Return the entry for ``name`` (or a class-path plug-in), else raise UnknownNameError.

        :param name: a registered name or ``"package.module:Class"``.
        """
        if name in self._entries:
            return self._entries[name]
        if self.plugin is not None and is_class_path(name):
            try:
                obj = resolve(name)
            except (ImportError, AttributeError) as err:
                raise UnknownNameError(
                    self.kind, name, self.names(), f" (import failed: {err})"
                ) from None
            entry = self.plugin(name, obj)
            self._entries[name] = entry
            return entry
        raise UnknownNameError(self.kind, name, self.names())

    def names(self) -> list[str]:
        """All registered names (plug-ins excluded), sorted."""
        return sorted(n for n in self._entries if not is_class_path(n))

    def items(self) -> list[tuple[str, Entry]]:
        """(name, entry) pairs sorted by name (plug-ins excluded)."""
        return [(n, self._entries[n]) for n in self.names()]


ENVS = Registry("env")
AGENTS = Registry("agent")
ATTACKS = Registry("attack")
LOOPS = Registry("loop")
DATASETS = Registry("dataset")
