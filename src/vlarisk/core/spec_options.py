"""A dataclass from a JSON command-line option (``--spec '{"hidden_dim": 16}'``), with errors naming the field.

A typo'd field, a value of the wrong type, text that is not JSON, or a value the dataclass itself
rejects becomes one :class:`~vlarisk.core.errors.InputError` line naming the option and the field, and
listing the valid fields where that helps; no traceback.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import typing
from collections.abc import Mapping
from typing import Any

from vlarisk.core.errors import InputError

# JSON value types that each annotation word admits (bool is not a number here, though Python says so).
_ACCEPTED = {"bool": (bool,), "int": (int,), "float": (int, float), "str": (str,), "list": (list,), "tuple": (list,)}


def json_object(text: str, option: str, holding: str = "", example: str = "") -> dict:
    """``json.loads(text)`` when it is a JSON object, else an :class:`InputError` naming ``option``
    (``holding``: what the object holds; ``example``: a valid value, shown when the text is not JSON)."""
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        hint = f"; write e.g. '{example}'" if example else ""
        raise InputError(f"{option}: not valid JSON ({exc.msg} at character {exc.pos}){hint}") from None
    if not isinstance(values, dict):
        raise InputError(f"{option}: expected a JSON object{' of ' + holding if holding else ''}, got {type(values).__name__}")
    return values


def dataclass_from_json(cls: type, text: str, option: str = "--spec") -> Any:
    """``cls(**json.loads(text))``, every problem an :class:`InputError` naming ``option`` and the field."""
    return dataclass_from_values(cls, json_object(text, option, f"{cls.__name__} fields", example='{"hidden_dim": 16}'), option)


def dataclass_from_values(cls: type, values: Mapping, option: str) -> Any:
    """``cls(**values)``, every problem an :class:`InputError` naming ``option`` and the field."""
    fields = {field.name: field for field in dataclasses.fields(cls)}
    for name, value in values.items():
        if name not in fields:
            close = difflib.get_close_matches(name, list(fields), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise InputError(f"{option}: unknown field '{name}'{hint}; the fields are {', '.join(fields)}")
        annotation = _type_name(typing.get_type_hints(cls)[name])
        accepted = _accepted_types(annotation)
        if accepted and (not isinstance(value, accepted) or (isinstance(value, bool) and bool not in accepted)):
            raise InputError(f"{option}: field '{name}' expects {annotation}, got {json.dumps(value)}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{option}: {exc}") from None


def _type_name(annotation) -> str:
    """A type as its annotation reads: ``int``, ``tuple[int, int]``, ``int | None``."""
    return annotation.__name__ if isinstance(annotation, type) and not typing.get_args(annotation) else str(annotation)


def _accepted_types(annotation: str) -> tuple[type, ...]:
    """The JSON value types an annotation admits (empty: not checked here)."""
    words = annotation.replace("[", " ").replace("]", " ").replace("|", " ").replace(",", " ").split()
    top = [word for word in words if word in _ACCEPTED]
    return tuple({kind for word in top for kind in _ACCEPTED[word]})
