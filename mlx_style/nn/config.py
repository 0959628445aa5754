"""The one way a network config is checked and stored. A config comes from a weight file's metadata, which is
untrusted input: every field is checked for its type and range before any network is built from it, and JSON
round-trips the same way for every kind (lists back to tuples, unknown fields refused)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, fields

from mlx_style.errors import UsageError


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(owner: str, name: str, value, low: int, high: int) -> None:
    if not _is_int(value):
        raise UsageError(f"[{owner}] {name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise UsageError(f"[{owner}] {name} must be an integer from {low} to {high}, got {value}")


def check_ints(owner: str, name: str, values, count: int | None, low: int, high: int) -> None:
    """A tuple of ``count`` integers (any number when None), each from ``low`` to ``high``."""
    if not isinstance(values, tuple) or (count is not None and len(values) != count) or not values:
        raise UsageError(f"[{owner}] {name} must be {count or 'some'} integers, got {values!r}")
    for value in values:
        check_int(owner, name, value, low, high)


def check_number(owner: str, name: str, value, low: float, high: float) -> None:
    """A real number with ``low < value < high`` (so never NaN or infinite)."""
    if not (
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and low < value < high
    ):
        raise UsageError(f"[{owner}] {name} > {low:g} and < {high:g} is required, got {value!r}")


def check_choice(owner: str, name: str, value, allowed) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise UsageError(f"[{owner}] {name} must be one of {tuple(allowed)}, got {value!r}")


def check_flag(owner: str, name: str, value) -> None:
    if not isinstance(value, bool):
        raise UsageError(f"[{owner}] {name} must be true or false, got {value!r}")


def to_json(config) -> str:
    return json.dumps(asdict(config), sort_keys=True)


def from_json(cls, text: str):
    """A config of dataclass ``cls`` from its JSON: an object with known fields only; lists become tuples (nested
    lists, tuples of tuples), as the dataclass holds them."""
    try:
        data = json.loads(text)
    except ValueError:
        raise UsageError(f"[{cls.__name__}] the config is not JSON") from None
    if not isinstance(data, dict):
        raise UsageError(f"[{cls.__name__}] expected a JSON object, got {type(data).__name__}")
    unknown = set(data) - {f.name for f in fields(cls)}
    if unknown:
        raise UsageError(
            f"[{cls.__name__}] unknown fields {sorted(unknown)}: the weight file was written by a newer "
            "mlx_style, or is not this kind of network; upgrade mlx_style or re-create the file"
        )
    return cls(**{k: _tuples(v) for k, v in data.items()})


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value
