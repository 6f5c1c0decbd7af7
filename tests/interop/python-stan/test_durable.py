"""Durable subscriptions: resume after a connection close or a subscription
close; unsubscribe forgets the durable (PROTOCOL §3.3.1, §3.8; BEHAVIOUR §5)."""

import pytest
from stan.aio.errors import StanError

from conftest import Recorder, describe, publish_all

CHAN = "durable.chan"


def summary(msgs):
    return [(m.sequence, m.data.decode(), bool(m.proto.redelivered)) for m in msgs]


async def test_durable_resumes_after_client_close_with_missed_and_unacked(server, clients):
    pub = await clients.connect(server, "durable-publisher")
    await publish_all(pub, CHAN, ["m1", "m2", "m3"])

    sc = await clients.connect(server, "durable-client")
    first = Recorder("durable before close")
    await sc.subscribe(CHAN, cb=first.cb, durable_name="dur", deliver_all_available=True, manual_acks=True)
    await first.count(3)
    assert summary(first.msgs) == [(1, "m1", False), (2, "m2", False), (3, "m3", False)]
    # Ack the first two; m3 stays unacknowledged.
    await sc.ack(first.msgs[0])
    await sc.ack(first.msgs[1])
    # The close is applied after the acks sent before it.
    await sc.close()

    await publish_all(pub, CHAN, ["m4", "m5"])

    again = await clients.connect(server, "durable-client")
    resumed = Recorder("resumed durable")
    # The start position of a resumed durable is ignored.
    await again.subscribe(CHAN, cb=resumed.cb, durable_name="dur", deliver_all_available=True, manual_acks=True)
    await resumed.seq(5)
    await publish_all(pub, CHAN, ["m6"])
    await resumed.seq(6)
    assert summary(resumed.msgs) == [
        (3, "m3", True),
        (4, "m4", False),
        (5, "m5", False),
        (6, "m6", False),
    ], describe(resumed.msgs)


async def test_durable_resumes_after_subscription_close_on_same_connection(server, clients):
    sc = await clients.connect(server, "durable-client")
    rec = Recorder("durable before close")
    sub = await sc.subscribe(CHAN, cb=rec.cb, durable_name="dur")
    await publish_all(sc, CHAN, ["m1", "m2"])
    await rec.count(2)
    await sub.close()

    await publish_all(sc, CHAN, ["m3", "m4"])

    resumed = Recorder("resumed durable")
    await sc.subscribe(CHAN, cb=resumed.cb, durable_name="dur")
    await resumed.seq(4)
    await publish_all(sc, CHAN, ["m5"])
    await resumed.seq(5)
    assert summary(rec.msgs) == [(1, "m1", False), (2, "m2", False)]
    assert summary(resumed.msgs) == [(3, "m3", False), (4, "m4", False), (5, "m5", False)], describe(resumed.msgs)


async def test_active_durable_cannot_be_registered_twice(server, clients):
    sc = await clients.connect(server, "durable-client")
    rec = Recorder()
    await sc.subscribe(CHAN, cb=rec.cb, durable_name="dur")
    with pytest.raises(StanError) as exc:
        await sc.subscribe(CHAN, cb=rec.cb, durable_name="dur")
    assert str(exc.value) == "stan: duplicate durable registration"


async def test_close_keeps_the_durable_unsubscribe_forgets_it(server, clients):
    sc = await clients.connect(server, "durable-client")
    await publish_all(sc, CHAN, ["m1", "m2", "m3"])

    rec = Recorder("first")
    sub = await sc.subscribe(CHAN, cb=rec.cb, durable_name="dur", deliver_all_available=True)
    await rec.seq(3)
    await sub.close()
    await publish_all(sc, CHAN, ["m4"])

    # Closed: resuming continues after the last delivered message.
    rec2 = Recorder("resumed after close")
    sub2 = await sc.subscribe(CHAN, cb=rec2.cb, durable_name="dur", deliver_all_available=True)
    await rec2.seq(4)
    await publish_all(sc, CHAN, ["m5"])
    await rec2.seq(5)
    assert summary(rec2.msgs) == [(4, "m4", False), (5, "m5", False)], describe(rec2.msgs)

    # Unsubscribed: the durable is gone, a subscription with the same name is
    # new and its start position applies (all available, from m1).
    await sub2.unsubscribe()
    await publish_all(sc, CHAN, ["m6"])
    rec3 = Recorder("after unsubscribe")
    await sc.subscribe(CHAN, cb=rec3.cb, durable_name="dur", deliver_all_available=True)
    await rec3.seq(6)
    assert summary(rec3.msgs) == [(i, f"m{i}", False) for i in range(1, 7)], describe(rec3.msgs)


async def test_unsubscribed_durable_with_new_only_gets_nothing_old(server, clients):
    sc = await clients.connect(server, "durable-client")
    rec = Recorder("first")
    sub = await sc.subscribe(CHAN, cb=rec.cb, durable_name="dur")
    await publish_all(sc, CHAN, ["m1"])
    await rec.seq(1)
    await sub.unsubscribe()
    await publish_all(sc, CHAN, ["m2", "m3"])

    rec2 = Recorder("after unsubscribe")
    await sc.subscribe(CHAN, cb=rec2.cb, durable_name="dur")
    await publish_all(sc, CHAN, ["m4"])
    await rec2.seq(4)
    assert summary(rec2.msgs) == [(4, "m4", False)], describe(rec2.msgs)
