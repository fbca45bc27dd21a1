"""Declared options: one system for methods, evaluation suites and attacks.

An ``Options`` class is a dataclass whose fields are declared with ``option``::

    @dataclass
    class NPOOptions:
        beta: float = option(0.1, "inverse temperature", minimum=0, exclusive_minimum=True)
        retain_loss: str = option("nll", "retain term", choices=("nll", "kl"))

* ``read_options`` turns ``key=value`` strings (or Python values) into checked values: the
  field's annotation (``typing.get_type_hints``) says how a string converts (bool, int, float,
  str, ``Optional[X]`` with ``none``/``null``, ``tuple[X, ...]``/``list[X]`` from comma-separated
  text, ``Literal`` choices), and an unknown key lists the valid ones;
* ``check_options`` / ``check_values`` enforce each field's type, ``choices`` and
  ``minimum``/``maximum`` (elementwise for lists), with a ``ConfigError`` naming the option,
  the bad value and what is allowed;
* ``option_rows`` describes every option (name, type, default, allowed values, help) for listings.

Checks that relate two options to each other stay in the owner's own ``validate``.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import functools
import json
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

from unlearnkit.errors import ConfigError

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
NONE_WORDS = frozenset({"none", "null"})
REQUIRED = dataclasses.MISSING  # the default of an option that must be given


@dataclasses.dataclass
class NoOptions:
    """No options of its own."""


def option(default: Any, help: str, *, choices: typing.Iterable | None = None, minimum: float | None = None,
           maximum: float | None = None, exclusive_minimum: bool = False, exclusive_maximum: bool = False) -> Any:
    """A documented option: a dataclass field whose metadata the checks and listings read.

    ``choices``, ``minimum`` and ``maximum`` apply to each element of a list option.
    ``exclusive_minimum``/``exclusive_maximum`` make the bound strict (``> minimum``).
    """
    meta = {"help": help, "choices": None if choices is None else tuple(choices), "minimum": minimum,
            "maximum": maximum, "exclusive_minimum": exclusive_minimum, "exclusive_maximum": exclusive_maximum}
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class OptionSpec:
    """One declared option, as the checks and listings see it."""

    name: str
    annotation: Any
    default: Any = REQUIRED
    help: str = ""
    choices: tuple | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False

    @property
    def type_name(self) -> str:
        return type_name(self.annotation)

    @property
    def allowed(self) -> str:
        """What values are valid, in words ("one of 'a', 'b'", "in (0, 1]", ">= 0"), or ""."""
        if self.choices is not None:
            return "one of " + ", ".join(map(repr, self.choices))
        lo, hi = self.minimum, self.maximum
        if lo is not None and hi is not None:
            return f"in {'(' if self.exclusive_minimum else '['}{lo}, {hi}{')' if self.exclusive_maximum else ']'}"
        if lo is not None:
            return f"{'>' if self.exclusive_minimum else '>='} {lo}"
        if hi is not None:
            return f"{'<' if self.exclusive_maximum else '<='} {hi}"
        return ""


@functools.cache
def option_specs(options_cls: type) -> dict[str, OptionSpec]:
    """Every option of ``options_cls`` (a dataclass), in declaration order."""
    hints = typing.get_type_hints(options_cls)
    specs = {}
    for f in dataclasses.fields(options_cls):
        meta = f.metadata
        ann = hints.get(f.name, Any)
        choices = meta.get("choices") or _literal_choices(ann)
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = REQUIRED
        specs[f.name] = OptionSpec(f.name, ann, default, meta.get("help", ""), choices, meta.get("minimum"),
                                   meta.get("maximum"), meta.get("exclusive_minimum", False),
                                   meta.get("exclusive_maximum", False))
    return specs


# -- reading ------------------------------------------------------------------------------------------
def read_options(options_cls: type, values: collections.abc.Mapping[str, Any], owner: str) -> dict[str, Any]:
    """The given options of ``owner`` (e.g. "method 'npo'"), strings converted by annotation, each checked.

    Unknown keys raise a ``ConfigError`` that lists the valid options; options not given are left out.
    """
    specs = option_specs(options_cls)
    unknown = [k for k in values if k not in specs]
    if unknown:
        raise unknown_options_error(options_cls, unknown, owner)
    out = {}
    for key, value in values.items():
        spec = specs[key]
        out[key] = convert(value, spec, owner) if isinstance(value, str) else value
        check_value(spec, out[key], owner)
    return out


def takes_options(options_cls: type, owner: str):
    """Decorate ``fn(*args, **options)``: its keyword options go through ``read_options`` first (strings
    converted, unknown keys and bad values refused), so direct calls are checked like registry calls.

    The function keeps its own defaults; ``options_cls`` declares the same names and defaults with their help,
    choices and ranges.
    """
    def wrap(fn):
        @functools.wraps(fn)
        def checked(*args, **options):
            return fn(*args, **read_options(options_cls, options, owner))

        checked.options_class = options_cls
        return checked

    return wrap


def unknown_options_error(options_cls: type, keys: typing.Iterable[str], owner: str) -> ConfigError:
    keys = list(keys)
    listing = ", ".join(f"{s.name}={_short(s.default)}" if s.default is not REQUIRED else s.name
                        for s in option_specs(options_cls).values()) or "none"
    what = f"option '{keys[0]}'" if len(keys) == 1 else "options " + ", ".join(f"'{k}'" for k in keys)
    return ConfigError(f"{owner} has no {what} (options: {listing})")


def convert(raw: str, spec: OptionSpec, owner: str = "") -> Any:
    """The value of option ``spec`` written as the string ``raw`` (``--opt key=value``)."""
    try:
        value = _convert(raw.strip(), spec.annotation)
    except (ValueError, TypeError) as exc:
        example = _short(spec.default) if spec.default not in (REQUIRED, None) else _example(spec.annotation)
        raise ConfigError(f"{_prefix(owner)}option '{spec.name}' expects a value like {example}, got '{raw}' "
                          f"(give {kind_text(spec.annotation)})") from exc
    if spec.choices is not None:  # a choice in another case is that choice ("MiniLM" is "minilm")
        value = _canonical(value, spec.choices)
    return value


def _convert(raw: str, ann: Any) -> Any:
    if ann is Any or ann is object:
        return raw
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin in (Union, types.UnionType):
        if type(None) in args and raw.lower() in NONE_WORDS:
            return None
        arms = [a for a in args if a is not type(None)]
        errors = []
        for arm in arms:
            try:
                return _convert(raw, arm)
            except (ValueError, TypeError) as exc:
                errors.append(exc)
        raise ValueError(f"{raw!r} fits none of {', '.join(map(type_name, arms))}")
    if origin is Literal:  # the choice itself is checked with the other choices (check_value)
        return _canonical(raw if isinstance(args[0], str) else _convert(raw, type(args[0])), args)
    if ann is bool:
        low = raw.lower()
        if low in TRUE_WORDS:
            return True
        if low in FALSE_WORDS:
            return False
        raise ValueError(raw)
    if ann is int:
        return int(raw)
    if ann is float:
        return float(raw)
    if ann is str:
        return raw
    if ann is Path:
        return Path(raw).expanduser()
    if ann is dict or origin in (dict, collections.abc.Mapping):
        value = json.loads(raw)
        if not isinstance(value, dict):
            raise ValueError("not a JSON object")
        return value
    if ann in (tuple, list) or origin in (tuple, list, collections.abc.Sequence):
        items = [x.strip() for x in raw.split(",") if x.strip()]
        item = _item_type(ann)
        converted = [_legacy_item(x) if item is None else _convert(x, item) for x in items]
        return converted if (ann is list or origin is list) else tuple(converted)
    if isinstance(ann, type):
        return ann(raw)
    raise TypeError(f"cannot read an option of type {ann!r} from text")


def _legacy_item(text: str) -> Any:
    """An element of a bare ``tuple``: a whole number where it looks like one, else the text."""
    return int(text) if text.lstrip("-").isdigit() else text


def _canonical(value: Any, choices: tuple) -> Any:
    if isinstance(value, (tuple, list)):
        return type(value)(_canonical(v, choices) for v in value)
    if isinstance(value, str) and value not in choices:
        for choice in choices:
            if isinstance(choice, str) and choice.lower() == value.lower():
                return choice
    return value


# -- checking ------------------------------------------------------------------------------------------
def check_options(options: Any, owner: str = "") -> None:
    """Check every option of the dataclass instance ``options``."""
    for spec in option_specs(type(options)).values():
        check_value(spec, getattr(options, spec.name), owner)


def check_values(options_cls: type, values: collections.abc.Mapping[str, Any], owner: str = "") -> None:
    """Check the given ``values`` (name -> value) against the options of ``options_cls``."""
    specs = option_specs(options_cls)
    unknown = [k for k in values if k not in specs]
    if unknown:
        raise unknown_options_error(options_cls, unknown, owner)
    for key, value in values.items():
        check_value(specs[key], value, owner)


def check_value(spec: OptionSpec, value: Any, owner: str = "") -> None:
    """A ``ConfigError`` naming the option, the value and what is allowed, unless ``value`` fits ``spec``."""
    if not fits(value, spec.annotation):
        raise ConfigError(f"{_prefix(owner)}option '{spec.name}' must be {kind_text(spec.annotation)}, "
                          f"got {value!r:.80}")
    if value is None:
        return
    items = list(value) if isinstance(value, (tuple, list)) and _item_type(spec.annotation) is not None else [value]
    for item in items:
        if spec.choices is not None and item not in spec.choices:
            _bad(spec, value, owner)
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            if isinstance(item, float) and not math.isfinite(item):
                raise ConfigError(f"{_prefix(owner)}option {spec.name} must be a finite number"
                                  f"{' ' + spec.allowed if spec.allowed else ''} (got {value!r})")
            lo, hi = spec.minimum, spec.maximum
            if lo is not None and (item <= lo if spec.exclusive_minimum else item < lo):
                _bad(spec, value, owner)
            if hi is not None and (item >= hi if spec.exclusive_maximum else item > hi):
                _bad(spec, value, owner)


def _bad(spec: OptionSpec, value: Any, owner: str):
    each = " (each)" if isinstance(value, (tuple, list)) else ""
    raise ConfigError(f"{_prefix(owner)}option {spec.name} must be {spec.allowed}{each} (got {value!r})")


def fits(value: Any, ann: Any) -> bool:
    """Whether a Python (or JSON) value has the type ``ann`` (ints fit floats, lists fit tuples)."""
    if ann is Any or ann is object:
        return True
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin in (Union, types.UnionType):
        return any(fits(value, a) for a in args)
    if ann is type(None):
        return value is None
    if origin is Literal:  # the type here; which of the choices, in check_value
        return any(type(value) is type(a) for a in args)
    if ann is bool:
        return isinstance(value, bool)
    if ann is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if ann is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if ann is Path:
        return isinstance(value, (str, Path))
    if ann is dict or origin in (dict, collections.abc.Mapping):
        return isinstance(value, collections.abc.Mapping)
    if ann in (tuple, list) or origin in (tuple, list, collections.abc.Sequence):
        if not isinstance(value, (tuple, list)):
            return False
        item = _item_type(ann)
        return item is None or all(fits(v, item) for v in value)
    if isinstance(ann, type):
        return isinstance(value, ann)
    return True


# -- describing ----------------------------------------------------------------------------------------
def type_name(ann: Any) -> str:
    """A short name of an option's type: ``float``, ``int | None``, ``tuple[int, ...]``."""
    if ann is Any:
        return "any"
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if ann is type(None):
        return "None"
    if origin is Literal:
        return "str" if all(isinstance(a, str) for a in args) else type_name(type(args[0]))
    if origin is not None:
        inner = ", ".join("..." if a is Ellipsis else type_name(a) for a in args)
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{inner}]" if inner else name
    return getattr(ann, "__name__", str(ann))


def kind_text(ann: Any) -> str:
    """What a value of type ``ann`` is, in words, for error messages."""
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if ann is Any or ann is object:
        return "any value"
    if origin in (Union, types.UnionType):
        arms = [a for a in args if a is not type(None)]
        text = " or ".join(kind_text(a) for a in arms)
        return f"{text} or none" if type(None) in args else text
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    if ann in (tuple, list) or origin in (tuple, list, collections.abc.Sequence):
        item = _item_type(ann)
        return "a comma-separated list" + (f" of {_plural(item)}" if item is not None else "")
    return {bool: "true or false", int: "a whole number", float: "a number", str: "a string", Path: "a path",
            dict: "a JSON object"}.get(ann, "a JSON object" if origin in (dict, collections.abc.Mapping)
                                       else f"a {type_name(ann)}")


def option_rows(options_cls: type) -> list[dict[str, str]]:
    """One row per option: name, type, default, allowed values, help (for ``unlearnkit methods|suites|attacks``)."""
    return [{"name": s.name, "type": s.type_name, "default": "(required)" if s.default is REQUIRED else repr(s.default),
             "allowed": s.allowed, "help": s.help} for s in option_specs(options_cls).values()]


def defaults(options_cls: type) -> dict[str, Any]:
    """Each option's default (``REQUIRED`` for none)."""
    return {s.name: s.default for s in option_specs(options_cls).values()}


# -- helpers ----------------------------------------------------------------------------------------------
def _item_type(ann: Any) -> Any:
    """The element type of a list annotation (``tuple[int, ...]`` -> int), None if unknown."""
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin in (Union, types.UnionType):
        for a in args:
            if a is not type(None) and (a in (tuple, list) or typing.get_origin(a) in (tuple, list,
                                                                                   collections.abc.Sequence)):
                return _item_type(a)
        return None
    if origin in (tuple, list, collections.abc.Sequence) and args:
        return args[0]
    return None


def _literal_choices(ann: Any) -> tuple | None:
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is Literal:
        return tuple(args)
    if origin in (Union, types.UnionType):
        for a in args:
            found = _literal_choices(a)
            if found:
                return found
    return None


def _example(ann: Any) -> str:
    origin = typing.get_origin(ann)
    if origin in (Union, types.UnionType):
        arms = [a for a in typing.get_args(ann) if a is not type(None)]
        return f"{_example(arms[0])} or none" if arms else "none"
    if origin is Literal:
        return repr(typing.get_args(ann)[0])
    if ann in (tuple, list) or origin in (tuple, list, collections.abc.Sequence):
        item = _item_type(ann)
        return f"{_example(item)},{_example(item)}" if item is not None else "a,b"
    return {bool: "true", int: "3", float: "0.5", str: "'text'", dict: '{"key": "value"}'}.get(ann, "'text'")


def _plural(ann: Any) -> str:
    return {bool: "true/false values", int: "whole numbers", float: "numbers", str: "names"}.get(
        ann, kind_text(ann))


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "…" + text[-3:]


def _prefix(owner: str) -> str:
    return f"{owner}: " if owner else ""


__all__ = ["FALSE_WORDS", "NONE_WORDS", "REQUIRED", "TRUE_WORDS", "NoOptions", "OptionSpec", "check_options",
           "check_value", "check_values", "convert", "defaults", "fits", "kind_text", "option", "option_rows",
           "option_specs", "read_options", "takes_options", "type_name", "unknown_options_error"]
