"""Every start position of a new subscription (PROTOCOL §3.3.2).

Each test ends with a marker message published after the subscription
started: messages of one subscription arrive in sequence order, so once the
marker is in, the exact list received so far is final."""

import asyncio
import time

from conftest import Recorder, describe, publish_all

CHAN = "start.chan"


async def setup_channel(server, clients, n=5):
    sc = await clients.connect(server, "start-client")
    await publish_all(sc, CHAN, [f"m{i}" for i in range(1, n + 1)])
    return sc


async def subscribe_then_marker(sc, marker_seq, **opts):
    rec = Recorder()
    await sc.subscribe(CHAN, cb=rec.cb, **opts)
    await publish_all(sc, CHAN, ["marker"])
    await rec.seq(marker_seq)
    return [(m.sequence, m.data.decode()) for m in rec.msgs], rec


async def test_new_only(server, clients):
    sc = await setup_channel(server, clients)
    got, rec = await subscribe_then_marker(sc, 6, start_at="new_only")
    assert got == [(6, "marker")], describe(rec.msgs)


async def test_default_start_is_new_only(server, clients):
    sc = await setup_channel(server, clients)
    got, rec = await subscribe_then_marker(sc, 6)
    assert got == [(6, "marker")], describe(rec.msgs)


async def test_last_received(server, clients):
    sc = await setup_channel(server, clients)
    got, rec = await subscribe_then_marker(sc, 6, start_at="last_received")
    assert got == [(5, "m5"), (6, "marker")], describe(rec.msgs)


async def test_last_received_on_empty_channel(server, clients):
    sc = await clients.connect(server, "start-client")
    got, rec = await subscribe_then_marker(sc, 1, start_at="last_received")
    assert got == [(1, "marker")], describe(rec.msgs)


async def test_sequence(server, clients):
    sc = await setup_channel(server, clients)
    got, rec = await subscribe_then_marker(sc, 6, start_at="sequence", sequence=3)
    assert got == [(3, "m3"), (4, "m4"), (5, "m5"), (6, "marker")], describe(rec.msgs)


async def test_sequence_beyond_last_starts_after_last(server, clients):
    sc = await setup_channel(server, clients)
    got, rec = await subscribe_then_marker(sc, 6, start_at="sequence", sequence=100)
    assert got == [(6, "marker")], describe(rec.msgs)


async def test_first_and_deliver_all_available(server, clients):
    sc = await setup_channel(server, clients)
    expected = [(i, f"m{i}") for i in range(1, 6)]
    got, rec = await subscribe_then_marker(sc, 6, start_at="first")
    assert got == expected + [(6, "marker")], describe(rec.msgs)
    got, rec = await subscribe_then_marker(sc, 7, deliver_all_available=True)
    assert got == expected + [(6, "marker"), (7, "marker")], describe(rec.msgs)


async def test_time_delta(server, clients):
    sc = await clients.connect(server, "start-client")
    await publish_all(sc, CHAN, ["old1", "old2", "old3"])
    # The client sends whole seconds: start = now - int(now - t). With
    # t = later_start - 2 the window opens between 1 and 2 s before the later
    # publishes began, so the earlier ones must be well older than that.
    await asyncio.sleep(4)
    later_start = time.time()
    await publish_all(sc, CHAN, ["new4", "new5"])
    got, rec = await subscribe_then_marker(sc, 6, start_at="time", time=later_start - 2)
    assert got == [(4, "new4"), (5, "new5"), (6, "marker")], describe(rec.msgs)
