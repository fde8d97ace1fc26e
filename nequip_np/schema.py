r"""Value checks shared by every configuration schema (model options, training configuration).

Each ``check`` takes a raw value (from YAML or Python keywords) and returns it normalised, or raises
:class:`Bad` with the expectation ("must be a positive integer"); the caller adds the dotted key and
the offending value, so every message reads ``<key> must be <expectation>, got <value>``.

Example:
    >>> number(0, lo_open=True, what="a positive number")(2)
    2.0
    >>> integer(1)(0)
    Traceback (most recent call last):
    ...
    nequip_np.schema.Bad: must be a positive integer
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from typing import Any

__all__ = ["Bad", "boolean", "choice", "integer", "is_number", "number", "string", "unknown_key_message"]


class Bad(Exception):
    """A value failed its check; the message is the expectation ("must be ...")."""


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def number(
    lo: float | None = None,
    lo_open: bool = False,
    hi: float | None = None,
    hi_open: bool = False,
    optional: bool = False,
    what: str = "a number",
) -> Callable:
    def check(v):
        if v is None and optional:
            return None
        if (
            not is_number(v)
            or (lo is not None and (v <= lo if lo_open else v < lo))
            or (hi is not None and (v >= hi if hi_open else v > hi))
        ):
            raise Bad(f"must be {what}" + (" or null" if optional else ""))
        return float(v)

    return check


def integer(lo: int = 0, optional: bool = False, hi: int | None = None) -> Callable:
    what = "a positive integer" if lo == 1 else f"an integer >= {lo}"
    if hi is not None:
        what = f"an integer between {lo} and {hi}"

    def check(v):
        if v is None and optional:
            return None
        if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
            raise Bad(f"must be {what}" + (" or null" if optional else ""))
        return int(v)

    return check


def boolean(v):
    if not isinstance(v, bool):
        raise Bad("must be true or false")
    return v


def choice(*options, optional: bool = False) -> Callable:
    def check(v):
        if v is None and optional:
            return None
        if v not in options:
            hint = difflib.get_close_matches(str(v), [str(o) for o in options], n=1)
            raise Bad(f"must be one of {list(options)}" + (f" (did you mean {hint[0]!r}?)" if hint else ""))
        return v

    return check


def string(optional: bool = False) -> Callable:
    def check(v):
        if v is None and optional:
            return None
        if not isinstance(v, str) or not v:
            raise Bad("must be a non-empty string" + (" or null" if optional else ""))
        return v

    return check


def unknown_key_message(key: Any, valid, section: str) -> str:
    msg = f"unknown key {key!r} in section {section!r}"
    hint = difflib.get_close_matches(str(key), list(valid), n=1)
    return msg + (f"; did you mean {hint[0]!r}?" if hint else f"; valid keys: {sorted(valid)}")
