"""Store limits and invalid channel names (BEHAVIOUR §2.1, §4; PROTOCOL §5)."""

import pytest
from stan.aio.errors import StanError

from conftest import WAIT, Recorder, describe, publish_all


async def test_max_channels(start_server, clients):
    server = await start_server("-mc", "1")
    sc = await clients.connect(server, "limits-client")
    await publish_all(sc, "first.chan", ["a"])

    ack = await sc.publish("second.chan", b"b", ack_wait=WAIT)
    assert ack.error == "too many channels"

    with pytest.raises(StanError) as exc:
        await sc.subscribe("third.chan", cb=Recorder().cb)
    assert str(exc.value) == "too many channels"

    # The existing channel still works.
    await publish_all(sc, "first.chan", ["c"])
    rec = Recorder()
    await sc.subscribe("first.chan", cb=rec.cb, deliver_all_available=True)
    await rec.count(2)
    assert [m.data for m in rec.msgs] == [b"a", b"c"]


async def test_max_subscriptions_per_channel(start_server, clients):
    server = await start_server("-msu", "1")
    sc = await clients.connect(server, "limits-client")
    other = await clients.connect(server, "limits-other")
    first = Recorder()
    await sc.subscribe("subs.chan", cb=first.cb)

    for client in (sc, other):
        with pytest.raises(StanError) as exc:
            await client.subscribe("subs.chan", cb=Recorder().cb)
        assert str(exc.value) == "too many subscriptions per channel"
    with pytest.raises(StanError) as exc:
        await other.subscribe("subs.chan", cb=Recorder().cb, durable_name="dur")
    assert str(exc.value) == "too many subscriptions per channel"

    # Another channel has its own count; the first subscription still works.
    await other.subscribe("subs.other", cb=Recorder().cb)
    await publish_all(sc, "subs.chan", ["x"])
    await first.count(1)


async def test_max_msgs_drops_the_oldest(start_server, clients):
    server = await start_server("-mm", "3")
    sc = await clients.connect(server, "limits-client")
    # Every publish succeeds: there is no "reject new messages" policy.
    await publish_all(sc, "msgs.chan", [f"m{i}" for i in range(1, 6)])

    rec = Recorder()
    await sc.subscribe("msgs.chan", cb=rec.cb, deliver_all_available=True)
    await rec.count(3)
    await publish_all(sc, "msgs.chan", ["m6"])
    await rec.seq(6)
    assert [(m.sequence, m.data.decode()) for m in rec.msgs] == [
        (3, "m3"),
        (4, "m4"),
        (5, "m5"),
        (6, "m6"),
    ], describe(rec.msgs)


# Names that are valid NATS subjects (so the publish reaches the server) but
# not valid channel names.
@pytest.mark.parametrize("channel", ["foo.*", "foo.>", "*", "foo/bar"])
async def test_invalid_channel_name_in_publish(server, clients, channel):
    sc = await clients.connect(server, "limits-client")
    ack = await sc.publish(channel, b"x", ack_wait=WAIT)
    assert ack.error == "stan: invalid publish request"


@pytest.mark.parametrize("channel", ["foo.*", "foo.>", "foo..bar", ".foo", "foo.", "foo/bar"])
async def test_invalid_channel_name_in_subscribe(server, clients, channel):
    sc = await clients.connect(server, "limits-client")
    with pytest.raises(StanError) as exc:
        await sc.subscribe(channel, cb=Recorder().cb)
    assert str(exc.value) == "stan: invalid subject"


async def test_invalid_subscription_requests(server, clients):
    sc = await clients.connect(server, "limits-client")
    cases = [
        (dict(ack_wait=0), "stan: invalid ack wait time, should be >= 1s"),
        (dict(max_inflight=0), "stan: invalid MaxInflight, should be >= 1"),
        (
            dict(queue="workers", durable_name="a:b"),
            "stan: durable name of a durable queue subscriber can't contain the character ':'",
        ),
    ]
    for opts, expected in cases:
        with pytest.raises(StanError) as exc:
            await sc.subscribe("valid.chan", cb=Recorder().cb, **opts)
        assert str(exc.value) == expected, opts


async def test_offline_durable_cannot_be_unsubscribed_through_its_old_inbox(server, clients):
    sc = await clients.connect(server, "limits-client")
    sub = await sc.subscribe("valid.chan", cb=Recorder().cb, durable_name="dur")
    await sub.close()
    with pytest.raises(StanError) as exc:
        await sub.unsubscribe()
    assert str(exc.value) == "stan: invalid subscription"
