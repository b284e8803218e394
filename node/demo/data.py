"""Synthetic, deterministic abuse signals for three labs with known overlaps.

Each offender is one identity (canonical email, phone, IP, account id). A lab
holding it writes it its own way, as real labs do: gmail addresses with dots,
+tags, capitals or googlemail.com; phones in local or international format;
IPv4 addresses as IPv4-mapped IPv6. The known truth of a pair of labs is the
set of identities both hold; matching must find exactly those, through every
spelling. All addresses and numbers come from documentation or fictional ranges.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from itertools import combinations

FIRST = [
    "ana",
    "ben",
    "chen",
    "dara",
    "eli",
    "fatima",
    "goran",
    "hana",
    "ivan",
    "jules",
    "kofi",
    "lena",
    "mateo",
    "nia",
    "omar",
    "priya",
    "quinn",
    "rosa",
    "sven",
    "tariq",
]
LAST = [
    "adams",
    "baker",
    "cruz",
    "diaz",
    "evans",
    "fox",
    "garcia",
    "hughes",
    "ito",
    "jones",
    "khan",
    "lopez",
    "moreau",
    "nowak",
    "okafor",
    "park",
    "reyes",
    "silva",
    "tanaka",
    "wu",
]
OTHER_DOMAINS = ["proton.example", "mail.example", "corp.example"]
AREA_CODES = ["201", "212", "305", "312", "415", "512", "617", "646", "702", "917"]
KINDS = ("email", "phone", "ip", "account_id")


@dataclass(frozen=True)
class Identity:
    email_local: str
    email_domain: str
    phone_digits: str  # ten digits, US
    ip: str
    account_id: str


@dataclass
class LabData:
    name: str
    # kind -> list of (identity, rendered value)
    signals: dict[str, list[tuple[Identity, str]]] = field(default_factory=dict)

    def values(self, kind: str) -> list[str]:
        return [v for _, v in self.signals[kind]]

    def rendered(self, kind: str, identities: set[Identity]) -> set[str]:
        return {v for ident, v in self.signals[kind] if ident in identities}


def _identity(rng: random.Random, serial: int) -> Identity:
    gmail = rng.random() < 0.6
    local = f"{rng.choice(FIRST)}.{rng.choice(LAST)}{serial}"
    domain = "gmail.com" if gmail else rng.choice(OTHER_DOMAINS)
    area = rng.choice(AREA_CODES)
    # 555-01xx numbers are reserved for fiction; the rest keeps each identity distinct.
    phone = f"{area}555{serial % 100:02d}{(serial // 100) % 100:02d}"
    net = rng.choice(["192.0.2", "198.51.100", "203.0.113"])
    # Documentation ranges only: 192.0.2/24, 198.51.100/24, 203.0.113/24, then 2001:db8::/32.
    ip = f"{net}.{serial}" if serial < 255 else f"2001:db8::{serial:x}"
    return Identity(local, domain, phone, ip, f"acct-{serial:06d}-{rng.randrange(16**6):06x}")


def _email(rng: random.Random, ident: Identity) -> str:
    local, domain = ident.email_local, ident.email_domain
    if domain == "gmail.com":
        style = rng.randrange(5)
        if style == 1:
            local = local.replace(".", "")
        elif style == 2:
            local = f"{local}+{rng.choice(['promo', 'api', 'x1'])}"
        elif style == 3:
            domain = "googlemail.com"
        elif style == 4:
            local = local.replace(".", "").upper()
    elif rng.random() < 0.5:
        local = local.capitalize()
    value = f"{local}@{domain}"
    return value.upper() if rng.random() < 0.1 else value


def _phone(rng: random.Random, ident: Identity) -> str:
    d = ident.phone_digits
    return rng.choice(
        [
            f"({d[:3]}) {d[3:6]}-{d[6:]}",
            f"{d[:3]}-{d[3:6]}-{d[6:]}",
            f"+1 {d[:3]} {d[3:6]} {d[6:]}",
            f"1{d}",
        ]
    )


def _ip(rng: random.Random, ident: Identity) -> str:
    if ":" not in ident.ip and rng.random() < 0.3:
        return f"::ffff:{ident.ip}"
    return ident.ip.upper() if ":" in ident.ip and rng.random() < 0.3 else ident.ip


RENDER = {
    "email": _email,
    "phone": _phone,
    "ip": _ip,
    "account_id": lambda rng, ident: ident.account_id,
}


@dataclass
class Consortium:
    labs: dict[str, LabData]
    # frozenset of lab names -> identities held by exactly those labs
    groups: dict[frozenset[str], list[Identity]]

    def shared(self, a: str, b: str) -> set[Identity]:
        return {i for g, ids in self.groups.items() if a in g and b in g for i in ids}


def generate(
    lab_names: list[str],
    *,
    seed: int = 2026,
    unique: int = 300,
    pair_shared: int = 20,
    all_shared: int = 6,
) -> Consortium:
    rng = random.Random(seed)
    serial = 0
    groups: dict[frozenset[str], list[Identity]] = {}

    def make(n: int) -> list[Identity]:
        nonlocal serial
        out = []
        for _ in range(n):
            serial += 1
            out.append(_identity(rng, serial))
        return out

    for name in lab_names:
        groups[frozenset([name])] = make(unique)
    for pair in combinations(lab_names, 2):
        groups[frozenset(pair)] = make(pair_shared)
    if len(lab_names) > 2:
        groups[frozenset(lab_names)] = make(all_shared)
    labs = {}
    for name in lab_names:
        lab_rng = random.Random(f"{seed}/{name}")
        held = [i for g, ids in groups.items() if name in g for i in ids]
        lab_rng.shuffle(held)
        data = LabData(name)
        for kind in KINDS:
            data.signals[kind] = [(i, RENDER[kind](lab_rng, i)) for i in held]
        labs[name] = data
    return Consortium(labs, groups)
