"""Warninglists: benign values per kind that never enter a round (shared NAT, public mail...).

A list is TOML::

    list_id = "consortium-benign"
    version = 3
    description = "Cloud egress ranges and public mail providers"

    [kinds.ip]
    values = ["100.64.0.0/10", "203.0.113.0/24"]     # CIDR ranges (also for ip_prefix)
    [kinds.email]
    values = ["gmail.com"]                            # domains, with their subdomains
    [kinds.device_id]
    values = ["00000000-0000-0000-0000-000000000000"] # exact values (normalized)

``ip`` ranges apply to ``ip`` and ``ip_prefix`` (a prefix is listed when it lies
inside a range); ``email`` and ``org_domain`` domains apply to both kinds (an
email is listed by its domain); every other kind lists exact values, normalized
like the signals they screen. The consortium signs a list with its CA key, like
the policy (``sign_warninglist`` / ``verify_signed_warninglist``); a node may add
an unsigned local list. Pure: bytes and keys in, values out.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from protocol.errors import InputError
from protocol.fingerprints import IDENTIFIER_KINDS, normalize
from protocol.rules import Rule
from protocol.signed_documents import (
    DocumentKind,
    check_stated_hash,
    read_document,
    sign_document,
    verify_document,
)

LIST_DOMAIN = b"crossmatch/v1/warninglist"
SIGNED_WARNINGLIST = DocumentKind(
    name="warninglist",
    format="crossmatch-signed-warninglist/v1",
    signature_domain=b"crossmatch/v1/warninglist-signature",
    max_bytes=4 * 1024 * 1024,
    syntax_rule=Rule.WARNINGLIST_SYNTAX,
    signature_rule=Rule.WARNINGLIST_SIGNATURE,
)
RANGE_KINDS = frozenset({"ip", "ip_prefix"})
DOMAIN_KINDS = frozenset({"email", "org_domain"})
_LIST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Warninglist:
    list_id: str
    version: int
    description: str = ""
    ranges: tuple[str, ...] = ()  # CIDR, canonical
    domains: tuple[str, ...] = ()  # normalized org domains
    exact: dict[str, tuple[str, ...]] = field(default_factory=dict)  # kind -> normalized values

    @property
    def name(self) -> str:
        return f"{self.list_id}@{self.version}"

    def canonical_bytes(self) -> bytes:
        body = {
            "list_id": self.list_id,
            "version": self.version,
            "description": self.description,
            "ranges": list(self.ranges),
            "domains": list(self.domains),
            "exact": {k: list(v) for k, v in sorted(self.exact.items())},
        }
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return LIST_DOMAIN + b"\n" + text.encode("utf-8")

    def hash(self) -> bytes:
        return hashlib.sha256(self.canonical_bytes()).digest()


def parse_warninglist_toml(text: bytes | str) -> Warninglist:
    try:
        data = tomllib.loads(text.decode("utf-8") if isinstance(text, bytes) else text)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise InputError(f"warninglist is not valid TOML: {e}", rule=Rule.WARNINGLIST_SYNTAX) from e
    unknown = set(data) - {"list_id", "version", "description", "kinds"}
    if unknown:
        raise _syntax(f"unknown keys {', '.join(sorted(unknown))}")
    list_id, version = data.get("list_id"), data.get("version")
    if not isinstance(list_id, str) or not _LIST_ID.match(list_id):
        raise _syntax("list_id must be 1-64 letters, digits, . _ -")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _syntax("version must be a positive integer")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise _syntax("description must be text")
    ranges: set[str] = set()
    domains: set[str] = set()
    exact: dict[str, set[str]] = {}
    for kind, values in _kind_values(data.get("kinds", {})):
        for value in values:
            if kind in RANGE_KINDS:
                ranges.add(_range(value, kind))
            elif kind in DOMAIN_KINDS:
                domains.add(_normalized("org_domain", value))
            else:
                exact.setdefault(kind, set()).add(_normalized(kind, value))
    return Warninglist(
        list_id,
        version,
        description,
        tuple(sorted(ranges)),
        tuple(sorted(domains)),
        {k: tuple(sorted(v)) for k, v in sorted(exact.items())},
    )


def _kind_values(kinds: Any) -> list[tuple[str, list[str]]]:
    if not isinstance(kinds, dict):
        raise _syntax("[kinds] must be a table")
    found = []
    for kind, table in kinds.items():
        if kind not in IDENTIFIER_KINDS:
            raise _syntax(f"unknown kind {kind!r}")
        if not isinstance(table, dict) or set(table) != {"values"}:
            raise _syntax(f"[kinds.{kind}] holds exactly one key, values")
        values = table["values"]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise _syntax(f"[kinds.{kind}] values must be a list of strings")
        found.append((kind, values))
    return found


def _range(value: str, kind: str) -> str:
    try:
        return str(ipaddress.ip_network(value.strip(), strict=False))
    except ValueError as e:
        raise _syntax(f"[kinds.{kind}] holds a value that is not a CIDR range") from e


def _normalized(kind: str, value: str) -> str:
    try:
        return normalize(kind, value)
    except InputError as e:
        raise _syntax(f"[kinds.{kind}] holds a bad value: {e.message}") from e


def _syntax(message: str) -> InputError:
    return InputError(f"warninglist: {message}", rule=Rule.WARNINGLIST_SYNTAX)


class Screen:
    """Which list holds back a normalized value: ranges by prefix length, domains by suffix."""

    def __init__(self, lists: list[Warninglist]):
        self._nets: dict[tuple[int, int], dict[int, str]] = {}  # (version, bits) -> {net: name}
        self._domains: dict[str, str] = {}
        self._exact: dict[tuple[str, str], str] = {}
        for wl in lists:
            for cidr in wl.ranges:
                net = ipaddress.ip_network(cidr)
                key = (net.version, net.prefixlen)
                self._nets.setdefault(key, {}).setdefault(int(net.network_address), wl.name)
            for domain in wl.domains:
                self._domains.setdefault(domain, wl.name)
            for kind, values in wl.exact.items():
                for value in values:
                    self._exact.setdefault((kind, value), wl.name)

    def __call__(self, kind: str, normalized: str) -> str | None:
        if kind in RANGE_KINDS:
            return self._in_range(normalized)
        if kind in DOMAIN_KINDS:
            domain = normalized.rpartition("@")[2]
            labels = domain.split(".")
            for i in range(len(labels)):
                if (name := self._domains.get(".".join(labels[i:]))) is not None:
                    return name
            return None
        return self._exact.get((kind, normalized))

    def _in_range(self, text: str) -> str | None:
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            return None
        width = net.max_prefixlen
        value = int(net.network_address)
        for (version, bits), nets in self._nets.items():
            if version == net.version and bits <= net.prefixlen:
                shift = width - bits
                if (name := nets.get((value >> shift) << shift)) is not None:
                    return name
        return None


# -- signing ------------------------------------------------------------------------------


def sign_warninglist(toml_text: bytes, ca_key: ec.EllipticCurvePrivateKey) -> bytes:
    wl = parse_warninglist_toml(toml_text)
    return sign_document(SIGNED_WARNINGLIST, toml_text, wl.canonical_bytes(), wl.hash(), ca_key)


def read_signed_warninglist(data: bytes) -> tuple[Warninglist, str, bytes]:
    """(list, signer key fingerprint, signature) without checking the signature."""
    doc = read_document(SIGNED_WARNINGLIST, data)
    wl = parse_warninglist_toml(doc.toml_text)
    check_stated_hash(SIGNED_WARNINGLIST, doc, wl.hash())
    return wl, doc.signer_key, doc.signature


def verify_signed_warninglist(data: bytes, ca_public_key: ec.EllipticCurvePublicKey) -> Warninglist:
    doc = read_document(SIGNED_WARNINGLIST, data)
    wl = parse_warninglist_toml(doc.toml_text)
    check_stated_hash(SIGNED_WARNINGLIST, doc, wl.hash())
    verify_document(SIGNED_WARNINGLIST, doc, wl.canonical_bytes(), ca_public_key)
    return wl
