"""One name -> factory mechanism for envs, agents and attacks.

Factories and parameter models may be given as ``"module:attribute"`` strings so that listing
and validating names does not import heavy dependencies (pandapower, torch models, ...).
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any


class UnknownNameError(KeyError):
    """Raised when a registry lookup fails; the message lists close matches and allowed names."""

    def __init__(self, kind: str, name: str, allowed: Iterable[str]) -> None:
        self.kind, self.name, self.allowed = kind, name, sorted(allowed)
        super().__init__(unknown_name_message(kind, name, self.allowed))

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def close_matches(name: str, allowed: Iterable[str], n: int = 3) -> list[str]:
    """Return up to ``n`` entries of ``allowed`` that look like a misspelling of ``name``."""
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
    """Import ``"package.module:attr"`` strings; return any other object unchanged."""
    if not isinstance(target, str):
        return target
    module_name, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split(".") if attr else []:
        obj = getattr(obj, part)
    return obj


@dataclass
class Entry:
    """A registered factory: ``factory(**kwargs)`` builds the thing; ``params`` validates kwargs."""

    name: str
    factory: Any
    description: str
    params: Any = None
    extra: dict[str, Any] | None = None

    def build(self, *args: Any, **kwargs: Any) -> Any:
        """Call the factory (importing it first if it was registered as a string)."""
        return resolve(self.factory)(*args, **kwargs)

    def params_model(self) -> Any:
        """The pydantic model validating this entry's kwargs, or None."""
        return resolve(self.params)


class Registry:
    """Maps names to factories for one kind of object (env, agent or attack).

    :param kind: the kind, used in error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(
        self,
        name: str,
        factory: Any,
        description: str,
        params: Any = None,
        **extra: Any,
    ) -> None:
        """Register ``factory`` under ``name``.

        :param name: the name used in configs and on the command line.
        :param factory: a callable or an ``"module:attr"`` string.
        :param description: one line shown by ``rlkit info``.
        :param params: optional pydantic model (or ``"module:attr"``) validating the kwargs.
        :param extra: free-form facts about the entry (e.g. ``action_kind``).
        """
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = Entry(name, factory, description, params, extra or None)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str) -> Entry:
        """Return the entry for ``name`` or raise :class:`UnknownNameError`."""
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self._entries) from None

    def names(self) -> list[str]:
        """All registered names, sorted."""
        return sorted(self._entries)

    def items(self) -> list[tuple[str, Entry]]:
        """(name, entry) pairs sorted by name."""
        return sorted(self._entries.items())


ENVS = Registry("env")
AGENTS = Registry("agent")
ATTACKS = Registry("attack")

Factory = Callable[..., Any]
