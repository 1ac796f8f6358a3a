"""Plain data across the sandbox boundary: JSON with tagged tuples, sets, dicts, bytes and
non-finite floats. Standard library only: this file is also copied into the sandbox.

Only exact built-in types cross (a subclass of int or list, or any other object, is refused),
so a value the trusted side receives can hold no code: its `==` is Python's own. Decoding is
strict: anything that is not what `encode` writes is a PlainDataError.

Nothing here imports `json` or `base64` at the top: both pull in `re`, about 9 ms of CPU in
every sandbox's start, where this file runs too (binascii and json's C encoder do the same work).
"""

from __future__ import annotations

import binascii
import math
from _json import encode_basestring_ascii, make_encoder

MAX_DEPTH = 100


class PlainDataError(ValueError):
    """A value that is not plain data (sending), or bytes that are not our encoding (receiving)."""


def encode(x, depth: int = 0):
    """A JSON-ready form of `x`; PlainDataError for anything but exact built-in plain types."""
    if depth > MAX_DEPTH:
        raise PlainDataError("nested too deeply")
    t = type(x)
    if x is None or t is bool or t is int or t is str:
        return x
    if t is float:
        return x if math.isfinite(x) else {"$float": repr(x)}
    if t is list:
        return [encode(v, depth + 1) for v in x]
    if t is tuple:
        return {"$tuple": [encode(v, depth + 1) for v in x]}
    if t is set or t is frozenset:
        return {"$set" if t is set else "$frozenset": [encode(v, depth + 1) for v in x]}
    if t is dict:
        return {"$dict": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in x.items()]}
    if t is bytes:
        return {"$bytes": binascii.b2a_base64(x, newline=False).decode("ascii")}
    if t is complex:
        return {"$complex": [encode(x.real, depth + 1), encode(x.imag, depth + 1)]}
    raise PlainDataError(f"a {t.__name__} is not plain data (None, bool, int, float, complex, str, bytes, "
                         "list, tuple, set, frozenset, dict)")


def decode(j, depth: int = 0):
    """The value `encode` wrote; PlainDataError for anything else."""
    if depth > MAX_DEPTH:
        raise PlainDataError("nested too deeply")
    t = type(j)
    if j is None or t is bool or t is int or t is str or t is float:
        return j
    if t is list:
        return [decode(v, depth + 1) for v in j]
    if t is not dict or len(j) != 1:
        raise PlainDataError(f"not an encoded value: {str(j)[:80]}")
    (tag, body), = j.items()
    if tag == "$float" and body in ("nan", "inf", "-inf"):
        return float(body)
    if tag in ("$tuple", "$set", "$frozenset", "$dict", "$complex") and type(body) is not list:
        raise PlainDataError(f"{tag} without a list")
    if tag == "$tuple":
        return tuple(decode(v, depth + 1) for v in body)
    if tag in ("$set", "$frozenset"):
        try:
            items = [decode(v, depth + 1) for v in body]
            return set(items) if tag == "$set" else frozenset(items)
        except TypeError as e:  # an unhashable member
            raise PlainDataError(f"{tag}: {e}") from None
    if tag == "$dict":
        if not all(type(p) is list and len(p) == 2 for p in body):
            raise PlainDataError("$dict entries must be [key, value] pairs")
        try:
            return {decode(k, depth + 1): decode(v, depth + 1) for k, v in body}
        except TypeError as e:
            raise PlainDataError(f"$dict: {e}") from None
    if tag == "$bytes" and type(body) is str:
        try:
            return binascii.a2b_base64(body.encode("ascii"), strict_mode=True)  # = base64.b64decode(validate=True)
        except (ValueError, UnicodeError):  # binascii.Error is a ValueError
            raise PlainDataError("$bytes: not base64") from None
    if tag == "$complex" and len(body) == 2:
        re, im = decode(body[0], depth + 1), decode(body[1], depth + 1)
        if type(re) is float and type(im) is float:
            return complex(re, im)
    raise PlainDataError(f"unknown tag {tag!r}")


# json's C encoder, as json.dumps(..., separators=(",", ":"), allow_nan=False) builds it; no
# circular-reference check (`encode` returns a fresh tree, depth-limited) and no `default`
# (`encode` returns only JSON types).
_to_json = make_encoder(None, None, encode_basestring_ascii, None, ":", ",", False, False, False)


def dumps(x) -> str:
    """One line of JSON for `x` (encode first); the same text as json.dumps writes."""
    return "".join(_to_json(encode(x), 0))


def _no_constants(name):
    raise PlainDataError(f"bare {name} is not our encoding")


def loads(line: str | bytes):
    """The value of one line written by `dumps`; PlainDataError for anything else."""
    import json  # here, not at the top: the sandbox child never calls this (see the module docstring)

    try:
        return decode(json.loads(line, parse_constant=_no_constants))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise PlainDataError(f"not JSON: {str(e)[:80]}") from None
