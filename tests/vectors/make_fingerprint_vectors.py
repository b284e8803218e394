"""Regenerate tests/vectors/fingerprints.json from the inputs listed here.

Run only when a normalization rule changes on purpose (and NORMALIZATION_VERSION
was bumped); review the diff of the JSON by hand. The tests compare against the
frozen JSON and never call this script.

    python tests/vectors/make_fingerprint_vectors.py

Phone numbers are libphonenumber example numbers or ranges reserved for drama
(Ofcom 020 7946 0xxx); IP addresses are from the documentation ranges
(RFC 5737, RFC 3849); domains use example.* (RFC 2606).
"""

from __future__ import annotations

import json
from pathlib import Path

from protocol.errors import CrossmatchError
from protocol.fingerprints import NORMALIZATION_VERSION, fingerprint, normalize

KEY = bytes(range(32))
OUT = Path(__file__).with_name("fingerprints.json")

# (kind, raw, default_region)
ACCEPTED = [
    ("email", "alice@example.com", "US"),
    ("email", "  Alice@Example.COM  ", "US"),
    ("email", "alice.smith@gmail.com", "US"),
    ("email", "Alice.Smith+newsletter@Gmail.com", "US"),
    ("email", "a.l.i.c.e.s.m.i.t.h@googlemail.com", "US"),
    ("email", "alicesmith+a+b@googlemail.com", "US"),
    ("email", "alice.smith+tag@example.com", "US"),
    ("email", "bob+shop@outlook.com", "US"),
    ("email", "bob.jones@outlook.com", "US"),
    ("email", "carol+x@icloud.com", "US"),
    ("email", "dave@bücher.example", "US"),
    ("email", "dave@xn--bcher-kva.example", "US"),
    ("email", "Émile@example.org.", "US"),
    ("email", "x@straße.example", "US"),
    ("phone", "(201) 555-0123", "US"),
    ("phone", "201.555.0123", "US"),
    ("phone", "+1 201-555-0123", "GB"),
    ("phone", "1-201-555-0123", "US"),
    ("phone", "+1 201 555 0123 ext. 7", "US"),
    ("phone", "020 7946 0018", "GB"),
    ("phone", "07400 123456", "GB"),
    ("phone", "+44 7400 123456", "DE"),
    ("phone", "030 123456", "DE"),
    ("phone", "01512 3456789", "DE"),
    ("phone", "+49 1512 3456789", "US"),
    ("phone", "00 49 30 123456", "GB"),
    ("ip", "192.0.2.1", "US"),
    ("ip", " 198.51.100.200 ", "US"),
    ("ip", "::ffff:192.0.2.1", "US"),
    ("ip", "::FFFF:c000:0201", "US"),
    ("ip", "2001:DB8:0:0:0:0:0:1", "US"),
    ("ip", "2001:db8::1", "US"),
    ("ip", "2001:0db8:0000:0000:0001:0000:0000:0001", "US"),
    ("ip_prefix", "203.0.113.77", "US"),
    ("ip_prefix", "203.0.113.0", "US"),
    ("ip_prefix", "::ffff:203.0.113.9", "US"),
    ("ip_prefix", "203.0.113.0/24", "US"),
    ("ip_prefix", "203.0.113.128/25", "US"),
    ("ip_prefix", "2001:db8:1:2:3:4:5:6", "US"),
    ("ip_prefix", "2001:DB8:1:2::/64", "US"),
    ("ip_prefix", "2001:db8:1:2:ffff::/80", "US"),
    ("account_id", "acct_12345", "US"),
    ("account_id", "  Acct_12345\t", "US"),
    ("account_id", "user|with|pipes", "US"),
    ("payment_fingerprint", "Xt5EWLLDS7FJjR1c", "US"),
    ("payment_fingerprint", "xt5ewllds7fjjr1c", "US"),
    ("api_key_hash", "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08", "US"),
    ("api_key_hash", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "US"),
    ("device_id", "6F9619FF-8B86-D011-B42D-00C04FC964FF", "US"),
    ("device_id", " 6f9619ff-8b86-d011-b42d-00c04fc964ff ", "US"),
    ("org_domain", "Example.COM.", "US"),
    ("org_domain", "example.com", "US"),
    ("org_domain", "Bücher.Example", "US"),
    ("org_domain", "xn--bcher-kva.example", "US"),
    ("org_domain", "ｅｘａｍｐｌｅ.com", "US"),
]

# (kind, raw, default_region, a substring of the error message)
REJECTED = [
    ("email", "", "US", "empty"),
    ("email", "   ", "US", "empty"),
    ("email", "alice", "US", "exactly one '@'"),
    ("email", "a@b@example.com", "US", "exactly one '@'"),
    ("email", "@example.com", "US", "empty local part"),
    ("email", "alice@", "US", "empty domain"),
    ("email", "al ice@example.com", "US", "whitespace"),
    ("email", "+tag@gmail.com", "US", "empty once the +tag"),
    ("email", "...@gmail.com", "US", "empty once the +tag and dots"),
    ("email", "alice@exa_mple.com", "US", "IDNA"),
    ("email", "alice@[192.0.2.1]", "US", "IDNA"),
    ("email", "alice@example..com", "US", "IDNA"),
    ("email", "a\u200b@example.com", "US", "invisible"),
    ("email", "x" * 65 + "@example.com", "US", "longer than 64"),
    ("phone", "12", "US", "too short"),
    ("phone", "not a number", "US", "no phone number"),
    ("phone", "+999 1234567", "US", "unknown country code"),
    ("phone", "030 123456", "US", "not a valid phone number"),
    ("phone", "0121 234 5678", "US", "too long"),
    ("phone", "555-0123", "US", "not a valid phone number"),
    ("phone", "+1 200 555 0123", "US", "not a valid phone number"),
    ("ip", "256.1.1.1", "US", "not an IPv4 or IPv6 address"),
    ("ip", "192.0.2.01", "US", "not an IPv4 or IPv6 address"),
    ("ip", "fe80::1%eth0", "US", "zone ids"),
    ("ip", "192.0.2.0/24", "US", "not an IPv4 or IPv6 address"),
    ("ip", "example.com", "US", "not an IPv4 or IPv6 address"),
    ("ip_prefix", "203.0.0.0/16", "US", "wider than the /24"),
    ("ip_prefix", "2001:db8::/48", "US", "wider than the /64"),
    ("ip_prefix", "fe80::1%1", "US", "zone ids"),
    ("ip_prefix", "nonsense", "US", "not an IPv4 or IPv6 address"),
    ("account_id", "", "US", "empty"),
    ("account_id", "acct\x00123", "US", "control"),
    ("account_id", "acct\n123", "US", "control"),
    ("account_id", "a" * 513, "US", "longer than 512"),
    ("payment_fingerprint", " \t ", "US", "empty"),
    ("payment_fingerprint", "fp\x1b[31m", "US", "control"),
    ("api_key_hash", "\ufeff9f86d081", "US", "invisible"),
    ("api_key_hash", "f" * 600, "US", "longer than 512"),
    ("device_id", "\u202eabc", "US", "invisible"),
    ("org_domain", "1.2.3.4", "US", "numeric label"),
    ("org_domain", "https://example.com", "US", "IDNA"),
    ("org_domain", "-example.com", "US", "IDNA"),
    ("org_domain", ".", "US", "empty"),
    ("org_domain", "😀.example", "US", "IDNA"),
    ("unknown_kind", "x", "US", "unknown identifier kind"),
]


def build() -> dict:
    accepted = []
    for kind, raw, region in ACCEPTED:
        normalized = normalize(kind, raw, default_region=region)
        accepted.append(
            {
                "kind": kind,
                "raw": raw,
                "region": region,
                "normalized": normalized,
                "fingerprint": fingerprint(KEY, kind, normalized).hex(),
            }
        )
    rejected = []
    for kind, raw, region, reason in REJECTED:
        try:
            normalize(kind, raw, default_region=region)
        except CrossmatchError as e:
            assert reason in e.message, (kind, raw, e.message)
        else:
            raise AssertionError(f"accepted but listed as rejected: {kind} {raw!r}")
        rejected.append({"kind": kind, "raw": raw, "region": region, "reason": reason})
    return {
        "description": "crossmatch identifier normalization and fingerprint golden vectors",
        "layout": "HMAC-SHA256(key, 'crossmatch/v1|' + kind + '|' + version + '|' + normalized)",
        "normalization_version": NORMALIZATION_VERSION,
        "key_hex": KEY.hex(),
        "accepted": accepted,
        "rejected": rejected,
    }


if __name__ == "__main__":
    OUT.write_text(json.dumps(build(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")
