"""Flow control in a round (issue 11, finding 6): at most ``peer_window`` of the peer's
chunks wait for our workers; the reader then blocks (and so, through HTTP/2, the peer),
and a failed round releases it. A stream split into tiny chunks is refused (chunk-size)."""

from __future__ import annotations

import os
import random
import threading

import private_set_intersection.python as psi_lib
import pytest

from protocol.errors import ProtocolError
from protocol.psi import Engine
from protocol.round import RoundSide
from protocol.transcript import RoundHeader


def header(peer_size: int) -> RoundHeader:
    return RoundHeader(
        round_id="r1",
        initiator="lab-a",
        responder="lab-b",
        mode="reveal",
        kinds=("email",),
        initiator_sizes=(peer_size,),
        responder_sizes=(1,),
        policy_hash=b"p" * 32,
        initiator_commitment=b"a" * 32,
        responder_commitment=b"b" * 32,
    )


@pytest.fixture(scope="module")
def engine():
    key = psi_lib.client.CreateWithNewKey(True).GetPrivateKeyBytes()
    with Engine(key, workers=1) as e:
        yield e


def side(engine, peer_size: int, **limits) -> RoundSide:
    return RoundSide(
        header(peer_size),
        "responder",
        [os.urandom(32)],
        engine,
        lambda kind, seq, packed: None,
        chunk_size=100,
        rng=random.Random(1),
        **limits,
    )


def test_a_full_window_blocks_the_reader_until_the_round_fails(engine):
    s = side(engine, 100, peer_window=2)  # not started: nothing drains the window
    point = engine.blind([os.urandom(32)])
    fed: list[int] = []

    def reader() -> None:
        for i in range(10):
            s.on_own_blinded(point)
            fed.append(i)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(2.0)
    assert t.is_alive() and len(fed) == 2  # two chunks queued, the third waits
    s.fail(ProtocolError("test over", rule="closed"))
    t.join(5.0)
    assert not t.is_alive()
    s.release()


def test_tiny_chunks_exhaust_the_chunk_budget(engine):
    s = side(engine, 1000, min_chunk=100)  # 1000 elements: 10 chunks + 4 allowed
    point = engine.blind([os.urandom(32)])
    with pytest.raises(ProtocolError) as err:
        for _ in range(20):
            s.on_own_blinded(point)
    assert err.value.rule == "chunk-size"
    s.fail(err.value)
    s.release()


def test_a_failed_round_cancels_its_queued_work_and_queues_no_more():
    # SIGTERM mid-round: the chunks still queued on the engine are dropped at once
    # instead of being blinded for seconds after the round is over.
    key = psi_lib.client.CreateWithNewKey(True).GetPrivateKeyBytes()
    with Engine(key, workers=1) as engine:
        chunks, per_chunk = 40, 500
        s = side(engine, (chunks + 1) * per_chunk)  # unbounded window: every chunk is queued
        chunk = engine.blind([os.urandom(32)]) * per_chunk
        for _ in range(chunks):
            s.on_own_blinded(chunk)
        s.fail(ProtocolError("shutting down", rule="shutdown"))
        engine.submit(lambda: None).result()  # the pool has run all that was left
        done = engine.reblinded
        assert done <= 3 * per_chunk  # the chunk on the worker, and a little slack
        s.on_own_blinded(chunk)  # a chunk after the failure is not computed either
        engine.submit(lambda: None).result()
        assert engine.reblinded == done
        s.release()
