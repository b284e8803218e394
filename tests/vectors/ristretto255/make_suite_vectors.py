"""Regenerate tests/vectors/ristretto255/suite.json (the ristretto255-v1 suite's own vectors).

Run only when the suite changes on purpose (it then gets a new name, e.g.
ristretto255-v2); review the diff of the JSON by hand. The tests re-derive every
value and never call this script.

    python tests/vectors/ristretto255/make_suite_vectors.py
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from protocol.suites import dleq
from protocol.suites.p256 import P256
from protocol.suites.ristretto255 import RISTRETTO255, hash_input, hash_to_group, multiply

OUT = Path(__file__).with_name("suite.json")
FINGERPRINTS = [bytes(32), bytes(range(32))] + [
    hashlib.sha256(b"crossmatch suite vector %d" % i).digest() for i in range(3)
]
RANDOM_A = bytes(range(64))
RANDOM_B = bytes(range(64, 128))
NONCE = bytes([0x5A]) * 64
CONTEXT = b"crossmatch suite vector context"
WEIGHTS_CONTEXT = b"crossmatch suite vector weights context"


def main() -> None:
    a, b = RISTRETTO255.key_from_random(RANDOM_A), RISTRETTO255.key_from_random(RANDOM_B)
    elements = []
    for fp in FINGERPRINTS:
        h = hash_to_group(fp)
        blinded = multiply(a, h)
        elements.append(
            {
                "fingerprint": fp.hex(),
                "hash_input": hash_input(fp).hex(),
                "element": h.hex(),
                "blinded_a": blinded.hex(),
                "reblinded_b": multiply(b, blinded).hex(),
            }
        )
    cs = [bytes.fromhex(e["blinded_a"]) for e in elements]
    ds = [bytes.fromhex(e["reblinded_b"]) for e in elements]
    kb = RISTRETTO255.public_key(b)
    seed = dleq.seed(WEIGHTS_CONTEXT)
    proof = dleq.prove(b, cs, ds, CONTEXT, NONCE, weights_context=WEIGHTS_CONTEXT)
    m, z = dleq.start_composites(cs, ds, WEIGHTS_CONTEXT, with_z=True)()
    p256_key = P256.key_from_random(RANDOM_A)
    with P256.engine(p256_key, workers=1) as e:
        p256 = [e.blind([fp]).hex() for fp in FINGERPRINTS]
    doc = {
        "suite": RISTRETTO255.name,
        "note": "keys: key_from_random(random); proof: b proves reblinded_b = b * blinded_a",
        "random_a": RANDOM_A.hex(),
        "random_b": RANDOM_B.hex(),
        "key_a": a.hex(),
        "key_b": b.hex(),
        "public_a": RISTRETTO255.public_key(a).hex(),
        "public_b": kb.hex(),
        "elements": elements,
        "proof": {
            "context": CONTEXT.hex(),
            "weights_context": WEIGHTS_CONTEXT.hex(),
            "nonce_random": NONCE.hex(),
            "seed": seed.hex(),
            "weights": [dleq.weight(seed, d).hex() for d in ds],
            "M": m.hex(),
            "Z": z.hex(),
            "proof": proof.hex(),
        },
        "openmined-p256-v1": {
            "random": RANDOM_A.hex(),
            "key": p256_key.hex(),
            "blinded": p256,
        },
    }
    OUT.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
