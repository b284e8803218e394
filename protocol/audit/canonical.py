"""Canonical JSON in the style of RFC 8785 (JCS): one byte encoding per value.

A signed or hashed record must have exactly one serialization, or two honest
implementations disagree about its hash. The rules, as in RFC 8785:

- no whitespace; object members sorted by the UTF-16 code units of their names;
- strings escape only ``"``, ``\\`` and the control characters below U+0020
  (``\\b \\f \\n \\r \\t`` by name, the rest as ``\\u00xx`` in lowercase hex);
  everything else, non-ASCII included, is written as UTF-8;
- lone surrogates are refused.

One deliberate restriction: numbers must be integers within +-(2**53 - 1), the
range every JSON implementation represents exactly. Audit records and receipts
hold counts and sizes only, so RFC 8785's float formatting is never needed and
a float is refused rather than risk a second encoding.

``parse_canonical`` accepts only bytes that ``encode_canonical`` would produce
(and no duplicate member names), so a parsed record re-encodes to the very
bytes that were signed.
"""

from __future__ import annotations

import json
import re
from typing import Any

from protocol.errors import CrossmatchError, InputError, ProtocolError
from protocol.rules import Rule

MAX_SAFE_INTEGER = 2**53 - 1

_ESCAPED = re.compile(r'[\x00-\x1f"\\]')
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_NAMED_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}


def _escape(match: re.Match[str]) -> str:
    char = match.group(0)
    return _NAMED_ESCAPES.get(char) or f"\\u{ord(char):04x}"


def _encode_string(value: str) -> str:
    if _SURROGATE.search(value):
        raise InputError(
            "string holds a lone surrogate, which has no UTF-8 form", rule=Rule.CANONICAL_JSON
        )
    return '"' + _ESCAPED.sub(_escape, value) + '"'


def _utf16_order(name: str) -> bytes:
    # Big-endian UTF-16 bytes compare exactly like the sequence of UTF-16 code units.
    return name.encode("utf-16-be", "surrogatepass")


def _encode(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise InputError(f"integer {value} is outside +-(2**53-1)", rule=Rule.CANONICAL_JSON)
        out.append(str(value))
    elif isinstance(value, str):
        out.append(_encode_string(value))
    elif isinstance(value, dict):
        _encode_object(value, out)
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise InputError(
            f"{type(value).__name__} has no canonical JSON form "
            "(use str, int, bool, None, list, dict)",
            rule=Rule.CANONICAL_JSON,
        )


def _encode_object(value: dict[Any, Any], out: list[str]) -> None:
    if not all(isinstance(name, str) for name in value):
        raise InputError("object member names must be strings", rule=Rule.CANONICAL_JSON)
    out.append("{")
    for i, name in enumerate(sorted(value, key=_utf16_order)):
        if i:
            out.append(",")
        out.append(_encode_string(name))
        out.append(":")
        _encode(value[name], out)
    out.append("}")


def _plain(value: Any) -> bool:
    """True if ``value`` holds only canonical-JSON types and no member name at or above
    U+D800, where UTF-16 order and code point order (Python's sort) can differ.
    Raises InputError on anything that has no canonical form."""
    if value is None or value is True or value is False or isinstance(value, str):
        return True
    if isinstance(value, int):
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise InputError(f"integer {value} is outside +-(2**53-1)", rule=Rule.CANONICAL_JSON)
        return True
    if isinstance(value, list | tuple):
        return all([_plain(item) for item in value])
    if isinstance(value, dict):
        if not all(isinstance(name, str) for name in value):
            raise InputError("object member names must be strings", rule=Rule.CANONICAL_JSON)
        names_plain = all(max(name, default="\0") < "\ud800" for name in value)
        return all([_plain(item) for item in value.values()]) and names_plain
    raise InputError(
        f"{type(value).__name__} has no canonical JSON form (use str, int, bool, None, list, dict)",
        rule=Rule.CANONICAL_JSON,
    )


def encode_canonical(value: Any) -> bytes:
    """The one canonical encoding of ``value``, as UTF-8 bytes."""
    if _plain(value):
        # Fast path: for these values Python's C encoder writes exactly the RFC 8785
        # form (same escapes, and code point order equals UTF-16 order below U+D800).
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise InputError(
                "string holds a lone surrogate, which has no UTF-8 form", rule=Rule.CANONICAL_JSON
            ) from e
    return encode_reference(value)


def encode_reference(value: Any) -> bytes:
    """The canonical encoding, written out rule by rule (slower; also the test oracle)."""
    out: list[str] = []
    _encode(value, out)
    return "".join(out).encode("utf-8")


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, item in pairs:
        if name in result:
            raise InputError(f"member {name!r} appears twice", rule=Rule.CANONICAL_JSON)
        result[name] = item
    return result


def _refuse_number(text: str) -> Any:
    raise InputError(f"number {text} is not an integer", rule=Rule.CANONICAL_JSON)


def parse_canonical(data: bytes) -> Any:
    """Parse ``data`` and insist it is already in canonical form; raises InputError."""
    try:
        text = data.decode("utf-8")
        value = json.loads(
            text,
            object_pairs_hook=_unique_members,
            parse_float=_refuse_number,
            parse_constant=_refuse_number,
        )
    except UnicodeDecodeError as e:
        raise InputError(f"not UTF-8 at byte {e.start}", rule=Rule.CANONICAL_JSON) from e
    except json.JSONDecodeError as e:
        raise InputError(f"not JSON: {e.msg} at character {e.pos}", rule=Rule.CANONICAL_JSON) from e
    except RecursionError as e:
        raise InputError("JSON nested too deeply", rule=Rule.CANONICAL_JSON) from e
    if encode_canonical(value) != data:
        raise InputError(
            "JSON is valid but not in canonical form (whitespace, member order or escaping differ)",
            rule=Rule.CANONICAL_JSON,
        )
    return value


def parse_bounded(data: bytes, *, what: str, limit: int, rule: Rule) -> Any:
    """``data`` (at most ``limit`` bytes) as canonical JSON; ProtocolError naming ``what``
    and ``rule`` otherwise: the size is checked before a byte is parsed."""
    if len(data) > limit:
        raise ProtocolError(f"{what} is {len(data)} bytes, above {limit}", rule=rule)
    try:
        return parse_canonical(data)
    except CrossmatchError as e:
        raise ProtocolError(f"{what} is not canonical JSON: {e.message}", rule=rule) from e
