"""Normalization of identifier signals: one canonical text per real-world identifier.

Two labs only match a signal when both turn it into the same text, so every rule
here is part of the protocol. Rules are versioned by :data:`NORMALIZATION_VERSION`,
which is hashed into every fingerprint (see :mod:`protocol.fingerprints.keyed`):
change any rule, bump the version, and old and new data stop matching loudly
instead of silently. ``tests/vectors/fingerprints.json`` freezes the rules.

Rules common to every kind, applied first: strip surrounding whitespace, Unicode
NFC, reject empty values, values over :data:`MAX_VALUE_LENGTH` characters, and
control or invisible format characters anywhere (they have no place in an
identifier and make look-alike spoofing easy). Then, per kind:

``email``
    Exactly one ``@``, no whitespace, local part at most 64 characters, local
    part lowercased, domain converted as ``org_domain``. ``googlemail.com`` becomes
    ``gmail.com``; for Gmail the dots in the local part are dropped. A ``+tag``
    is dropped only for providers that document ``+`` as sub-addressing
    (:data:`PLUS_ADDRESSING_DOMAINS`); elsewhere ``+`` may be a literal part of
    a mailbox name, and a false match between two people costs more than a
    missed match between two spellings.
``phone``
    Parsed by ``phonenumbers`` with ``default_region`` for numbers without a
    ``+country`` prefix; must be a valid number; written as E.164. An extension
    is dropped: the fingerprint identifies the line.
``ip``
    ``ipaddress``; IPv4-mapped IPv6 becomes IPv4; canonical compressed text.
    Zone ids (``%eth0``), prefixes and ambiguous forms (leading zeros) are rejected.
``ip_prefix``
    An address (or a prefix at least as narrow as the result) becomes its /24
    (IPv4) or /64 (IPv6) network, e.g. ``203.0.113.0/24``.
``account_id``, ``payment_fingerprint``
    Opaque and case-sensitive: only the common rules.
``api_key_hash``, ``device_id``
    Common rules, then lowercased (hex digests and UUIDs are case-insensitive).
``org_domain``
    Lowercased, one trailing dot removed, IDNA2008 with UTS #46 mapping (the
    ``idna`` package) to ASCII; labels of letters, digits and inner hyphens; a
    numeric last label (an IP address) is rejected.

Error messages name the rule that failed, never the value: the caller adds the
file and line, and raw identifiers stay out of logs.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import unicodedata

import idna
import phonenumbers

from protocol.errors import ConfigError, InputError

NORMALIZATION_VERSION = "n1"
"""Version of every rule in this module; hashed into each fingerprint."""

# In display order (CLI choices, policy documents); IDENTIFIER_KINDS for membership.
IDENTIFIER_KIND_ORDER: tuple[str, ...] = (
    "email",
    "phone",
    "ip",
    "ip_prefix",
    "account_id",
    "api_key_hash",
    "payment_fingerprint",
    "device_id",
    "org_domain",
)
IDENTIFIER_KINDS: frozenset[str] = frozenset(IDENTIFIER_KIND_ORDER)

MAX_VALUE_LENGTH = 512
MAX_EMAIL_LOCAL_LENGTH = 64  # RFC 5321; also keeps a normalized email under MAX_VALUE_LENGTH
MAX_DOMAIN_LENGTH = 253

GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})
PLUS_ADDRESSING_DOMAINS = frozenset(
    {
        "gmail.com",
        "outlook.com",
        "hotmail.com",
        "live.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "fastmail.com",
        "proton.me",
        "protonmail.com",
    }
)

IPV4_PREFIX_LENGTH = 24
IPV6_PREFIX_LENGTH = 64

# Cc: control characters; Cf: invisible format characters (zero-width space, BOM,
# bidi overrides); Zl/Zp: line and paragraph separators.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")


def normalize(kind: str, value: str, *, default_region: str = "US") -> str:
    """Return the canonical text of ``value`` as an identifier of ``kind``.

    Raises :class:`InputError` when the value is not a valid identifier of that
    kind (or the kind is unknown) and :class:`ConfigError` for an unknown
    ``default_region``. The error carries no ``where``: the caller knows the line.
    """
    rule = _RULES.get(kind)
    if rule is None:
        known = ", ".join(sorted(IDENTIFIER_KINDS))
        raise InputError(f"unknown identifier kind {kind!r} (known: {known})")
    if not isinstance(value, str):
        raise InputError(f"{kind} value must be text, not {type(value).__name__}")
    normalized = rule(_common(kind, value), default_region)
    if len(normalized) > MAX_VALUE_LENGTH:
        # Lowercasing can lengthen text ("İ" becomes two characters): keep outputs valid inputs.
        raise InputError(f"{kind} longer than {MAX_VALUE_LENGTH} characters once normalized")
    return normalized


def _common(kind: str, value: str) -> str:
    text = unicodedata.normalize("NFC", value.strip())
    if not text:
        raise InputError(f"empty {kind}")
    if len(text) > MAX_VALUE_LENGTH:
        raise InputError(f"{kind} longer than {MAX_VALUE_LENGTH} characters ({len(text)})")
    for position, char in enumerate(text, start=1):
        if unicodedata.category(char) in _FORBIDDEN_CATEGORIES:
            raise InputError(
                f"{kind} contains control or invisible character U+{ord(char):04X} "
                f"at position {position}"
            )
    return text


def _normalize_email(text: str, _region: str) -> str:
    if text.count("@") != 1:
        raise InputError(f"email must contain exactly one '@' (found {text.count('@')})")
    if any(char.isspace() for char in text):
        raise InputError("email contains whitespace")
    local, domain = text.split("@")
    if not local:
        raise InputError("email has an empty local part")
    if not domain:
        raise InputError("email has an empty domain")
    domain = _ascii_domain(domain, what="email domain")
    if domain == "googlemail.com":
        domain = "gmail.com"
    local = unicodedata.normalize("NFC", local.lower())
    if domain in PLUS_ADDRESSING_DOMAINS:
        local = local.split("+", 1)[0]
    if domain in GMAIL_DOMAINS:
        local = local.replace(".", "")
    if not local:
        raise InputError("email local part is empty once the +tag and dots are removed")
    if len(local) > MAX_EMAIL_LOCAL_LENGTH:
        raise InputError(
            f"email local part longer than {MAX_EMAIL_LOCAL_LENGTH} characters ({len(local)})"
        )
    return f"{local}@{domain}"


def _normalize_phone(text: str, region: str) -> str:
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError(
            f"unknown default phone region {region!r}: use a two-letter ISO 3166 code like 'US'"
        )
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as e:
        raise InputError(f"not a phone number: {_phone_parse_reason(e)}") from e
    if not phonenumbers.is_valid_number(number):
        reason = _phone_invalid_reason(number)
        raise InputError(f"not a valid phone number ({reason}; default region {region})")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _phone_parse_reason(error: phonenumbers.NumberParseException) -> str:
    reasons = {
        phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
        phonenumbers.NumberParseException.NOT_A_NUMBER: "no phone number found in the text",
        phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "too short after the IDD prefix",
        phonenumbers.NumberParseException.TOO_SHORT_NSN: "too short",
        phonenumbers.NumberParseException.TOO_LONG: "too long",
    }
    return reasons.get(error.error_type, "unparsable")


def _phone_invalid_reason(number: phonenumbers.PhoneNumber) -> str:
    result = phonenumbers.is_possible_number_with_reason(number)
    reasons = {
        phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
        phonenumbers.ValidationResult.TOO_SHORT: "too short",
        phonenumbers.ValidationResult.TOO_LONG: "too long",
        phonenumbers.ValidationResult.INVALID_LENGTH: "wrong length for the country",
    }
    return reasons.get(result, "no such number range in the numbering plan")


def _parse_address(text: str, kind: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if "%" in text:
        raise InputError(f"{kind}: zone ids ('%...') are not accepted")
    try:
        address = ipaddress.ip_address(text)
    except ValueError as e:
        raise InputError(f"{kind}: not an IPv4 or IPv6 address") from e
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _normalize_ip(text: str, _region: str) -> str:
    return str(_parse_address(text, "ip"))


def _normalize_ip_prefix(text: str, _region: str) -> str:
    if "/" in text:
        address, length = _parse_network(text)
    else:
        address = _parse_address(text, "ip_prefix")
        length = address.max_prefixlen
    target = IPV4_PREFIX_LENGTH if address.version == 4 else IPV6_PREFIX_LENGTH
    if length < target:
        raise InputError(f"ip_prefix: a /{length} is wider than the /{target} token")
    return str(ipaddress.ip_network((address, target), strict=False))


def _parse_network(
    text: str,
) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    """Accept an already-normalized prefix, so that normalization is idempotent."""
    if "%" in text:
        raise InputError("ip_prefix: zone ids ('%...') are not accepted")
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError as e:
        raise InputError("ip_prefix: not an IP address or network prefix") from e
    address = network.network_address
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        if network.prefixlen < 96:
            raise InputError("ip_prefix: an IPv4-mapped prefix must be at least /96")
        return address.ipv4_mapped, network.prefixlen - 96
    return address, network.prefixlen


def _normalize_case_sensitive(text: str, _region: str) -> str:
    return text


def _normalize_case_insensitive(text: str, _region: str) -> str:
    return unicodedata.normalize("NFC", text.lower())


def _normalize_org_domain(text: str, _region: str) -> str:
    return _ascii_domain(text, what="org_domain")


@functools.lru_cache(maxsize=65536)  # domains repeat (gmail.com); IDNA checks are slow
def _ascii_domain(text: str, *, what: str) -> str:
    """Lowercase, drop one trailing dot, IDNA2008 (UTS #46) to ASCII, check LDH labels."""
    domain = text.lower()
    if domain.endswith("."):
        domain = domain[:-1]
    if not domain:
        raise InputError(f"{what} is empty")
    try:
        ascii_domain = idna.encode(domain, uts46=True, transitional=False).decode("ascii")
    except idna.IDNAError as e:
        # idna's message quotes the label; keep only the rule so values stay out of logs.
        reason = re.sub(r"'.*'", "the label", str(e)) or "invalid"
        raise InputError(f"{what} is not a valid IDNA host name ({reason})") from e
    except UnicodeError as e:
        raise InputError(f"{what} is not a valid IDNA host name") from e
    if len(ascii_domain) > MAX_DOMAIN_LENGTH:
        raise InputError(f"{what} longer than {MAX_DOMAIN_LENGTH} characters once in ASCII")
    labels = ascii_domain.split(".")
    for number, label in enumerate(labels, start=1):
        if len(label) > 63 or not _LDH_LABEL.fullmatch(label):
            raise InputError(f"{what} label {number} is not letters, digits and inner hyphens")
    if labels[-1].isdigit():
        raise InputError(f"{what} ends in a numeric label (an IP address is not a domain)")
    return ascii_domain


_RULES = {
    "email": _normalize_email,
    "phone": _normalize_phone,
    "ip": _normalize_ip,
    "ip_prefix": _normalize_ip_prefix,
    "account_id": _normalize_case_sensitive,
    "payment_fingerprint": _normalize_case_sensitive,
    "api_key_hash": _normalize_case_insensitive,
    "device_id": _normalize_case_insensitive,
    "org_domain": _normalize_org_domain,
}
