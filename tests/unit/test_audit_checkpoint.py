"""Signed checkpoints: the note format, its signature, and one rejection per rule."""

from __future__ import annotations

import base64

import pytest

from protocol.audit.checkpoint import (
    CHECKPOINT_VERSION,
    make_checkpoint,
    parse_checkpoint,
    sign_checkpoint,
    verify_checkpoint,
)
from protocol.audit.merkle import leaf_hash
from protocol.audit.records import make_log_id
from protocol.errors import VerificationError
from tests.audit_simulator import T0, fixed_key

KEY = fixed_key("checkpoint-test")
ORIGIN = make_log_id("lab-a", KEY.public_key())
ROOT = leaf_hash(b"some tree")


def note(size: int = 42, root: bytes = ROOT, origin: str = ORIGIN, key=KEY) -> str:
    return sign_checkpoint(make_checkpoint(origin=origin, size=size, root=root, now=T0), key)


def test_layout_is_a_signed_note():
    text = note()
    body, blank, signature = text.partition("\n\n")
    assert body.split("\n") == [
        ORIGIN,
        "42",
        base64.b64encode(ROOT).decode(),
        f"version {CHECKPOINT_VERSION}",
        "time 2025-03-03T09:00:00.000000Z",
    ]
    assert signature.startswith(f"\u2014 {ORIGIN} ") and signature.endswith("\n")
    assert len(base64.b64decode(signature.split(" ")[2])) == 68


def test_round_trip():
    checkpoint = verify_checkpoint(note(), KEY.public_key(), origin=ORIGIN)
    assert (checkpoint.origin, checkpoint.size, checkpoint.root) == (ORIGIN, 42, ROOT)
    assert parse_checkpoint(note()) == checkpoint


def test_signing_is_deterministic():
    assert note() == note()


@pytest.mark.parametrize(
    ("old", "new", "rule"),
    [
        ("\n42\n", "\n43\n", "checkpoint-signature"),  # size changed
        (
            "version crossmatch-checkpoint/v1",
            "version crossmatch-checkpoint/v2",
            "checkpoint-format",
        ),
        ("time 2025", "time 2026", "checkpoint-signature"),
        ("\n42\n", "\n042\n", "checkpoint-format"),
        ("\n\n\u2014", "\n\u2014", "checkpoint-format"),  # no blank line
    ],
)
def test_changed_text_is_rejected(old, new, rule):
    tampered = note().replace(old, new, 1)
    assert tampered != note()
    with pytest.raises(VerificationError) as caught:
        verify_checkpoint(tampered, KEY.public_key(), origin=ORIGIN)
    assert caught.value.rule == rule


def test_flipped_byte_in_root_is_rejected():
    text = note()
    root_line = text.split("\n")[2]
    flipped = base64.b64encode(bytes([ROOT[0] ^ 1]) + ROOT[1:]).decode()
    with pytest.raises(VerificationError, match="signature does not verify"):
        verify_checkpoint(text.replace(root_line, flipped), KEY.public_key(), origin=ORIGIN)


def test_flipped_byte_in_signature_is_rejected():
    text = note()
    head, _, blob = text.rstrip("\n").rpartition(" ")
    raw = bytearray(base64.b64decode(blob))
    raw[-1] ^= 0x01
    tampered = f"{head} {base64.b64encode(bytes(raw)).decode()}\n"
    with pytest.raises(VerificationError, match="signature does not verify") as caught:
        verify_checkpoint(tampered, KEY.public_key(), origin=ORIGIN)
    assert caught.value.rule == "checkpoint-signature"


def test_checkpoint_of_another_log_is_rejected():
    other = make_log_id("lab-b", KEY.public_key())
    with pytest.raises(VerificationError, match="is for log .*lab-b") as caught:
        verify_checkpoint(note(origin=other), KEY.public_key(), origin=ORIGIN)
    assert caught.value.rule == "checkpoint-origin"


def test_checkpoint_signed_by_another_key_is_rejected():
    with pytest.raises(VerificationError, match="no signature by the key") as caught:
        verify_checkpoint(note(key=fixed_key("intruder")), KEY.public_key(), origin=ORIGIN)
    assert caught.value.rule == "checkpoint-signature"


def test_garbage_is_a_format_error():
    for garbage in ("", "hello\n", "a\n\nb", ORIGIN + "\n1\n\n\u2014 x y\n"):
        with pytest.raises(VerificationError) as caught:
            verify_checkpoint(garbage, KEY.public_key())
        assert caught.value.rule == "checkpoint-format"
