"""Typed parameter models generated from constructor signatures, and their validation messages.

An agent's ``agent.kwargs`` (and any factory's keyword arguments) are validated by a pydantic
model built from the constructor's signature: type hints give the field types, defaults the
defaults, and the ``:param name: text`` lines of the docstring the help shown by
``rlkit config-help --agent NAME``.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

_PARAM_LINE = re.compile(r":param (\w+):\s*(.*)")


def param_docs(obj: Any) -> dict[str, str]:
    """``{name: first line of help}`` from ``:param name: help`` lines of the docstrings of
    ``obj`` and, for a class, its ``__init__`` and its bases.

    :param obj: a function or a class.
    """
    docs: dict[str, str] = {}
    sources = [obj]
    if isinstance(obj, type):
        sources = [c for klass in obj.__mro__ for c in (klass, vars(klass).get("__init__"))]
    for source in sources:
        if source is None:
            continue
        text = inspect.getdoc(source) or ""
        for match in _PARAM_LINE.finditer(text):
            docs.setdefault(match.group(1), match.group(2).strip())
    return docs


def _hints(target: Callable[..., Any]) -> dict[str, Any]:
    """Type hints of ``target``'s parameters; each unresolvable one is left out (Any)."""
    try:
        return typing.get_type_hints(target)
    except Exception:  # some forward reference only exists under TYPE_CHECKING: go one by one
        pass
    hints: dict[str, Any] = {}
    namespace = getattr(inspect.getmodule(target), "__dict__", {})
    for pname, param in inspect.signature(target).parameters.items():
        annotation = param.annotation
        if isinstance(annotation, str):
            try:
                annotation = eval(annotation, dict(namespace))  # noqa: S307  code's own annotations
            except Exception:
                continue
        if annotation is not inspect.Parameter.empty:
            hints[pname] = annotation
    return hints


def signature_model(
    target: Callable[..., Any], name: str, exclude: Iterable[str] = ()
) -> type[BaseModel] | None:
    """A pydantic model (unknown keys forbidden) of the keyword arguments of ``target``.

    :param target: a class (its ``__init__`` is read) or a function.
    :param name: the model's name (shown in messages).
    :param exclude: arguments supplied by rlkit itself (spaces, env, device, ...).
    :return: the model, or None when ``target`` takes ``**kwargs`` (anything goes).
    """
    init = getattr(target, "__init__", None)
    function: Any = init if isinstance(target, type) else target
    parameters = inspect.signature(function).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return None
    hints, docs, skip = _hints(function), param_docs(target), {"self", *exclude}
    fields: dict[str, Any] = {}
    for pname, param in parameters.items():
        if pname in skip or param.kind is inspect.Parameter.VAR_POSITIONAL:
            continue
        annotation = hints.get(pname, Any)
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[pname] = (annotation, Field(default, description=docs.get(pname, "")))
    config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    for fname, (annotation, info) in list(fields.items()):
        try:  # a type pydantic cannot describe (or a default not of the hinted type): any value
            probe: dict[str, Any] = {fname: (annotation, info)}
            create_model("Probe", __config__=config, **probe).model_validate({})
        except Exception:
            fields[fname] = (Any, info)
    return create_model(name, __config__=config, **fields)  # type: ignore[call-overload]


def model_help(model: type[BaseModel], prefix: str) -> list[str]:
    """One line per field of ``model``: ``prefix+name (default ...): description``.

    :param model: the parameter model.
    :param prefix: dotted prefix, e.g. ``"agent.kwargs."``.
    """
    lines = []
    for fname, info in model.model_fields.items():
        default = (
            "required"
            if info.is_required()
            else f"default {info.get_default(call_default_factory=True)!r}"
        )
        lines.append(f"  {prefix}{fname} ({default}): {info.description or ''}")
    return lines


def check_params(
    model: type[BaseModel] | None, given: dict[str, Any], source: str, key: str
) -> None:
    """Validate ``given`` against ``model``; raise ConfigError naming ``source`` and ``key.field``.

    :param model: the parameter model (None: nothing to check).
    :param given: the values from the config.
    :param source: the config file (for the message).
    :param key: dotted key of the section, e.g. ``"agent.kwargs"``.
    """
    if model is None:
        return
    from rlkit.config import ConfigError, validation_message

    try:
        model.model_validate(given)
    except ValidationError as err:
        raise ConfigError(validation_message(err, source, model, prefix=key + ".")) from None
