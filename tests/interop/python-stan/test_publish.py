"""Publish with a wait for each PubAck, and many publishes in flight."""

import asyncio

from conftest import WAIT, Recorder, describe


async def test_sync_publish_each_acked_then_delivered_in_order(server, clients):
    sc = await clients.connect(server, "sync-pub")
    n = 20
    guids = []
    for i in range(n):
        ack = await sc.publish("sync.chan", f"m{i}".encode(), ack_wait=WAIT)
        assert ack.error == ""
        assert ack.guid
        guids.append(ack.guid)
    assert len(set(guids)) == n

    rec = Recorder()
    await sc.subscribe("sync.chan", cb=rec.cb, deliver_all_available=True)
    msgs = await rec.count(n)
    assert [(m.sequence, m.data) for m in msgs] == [(i + 1, f"m{i}".encode()) for i in range(n)]
    stamps = [m.timestamp for m in msgs]
    assert stamps == sorted(stamps), "timestamps must not go backwards within a channel"


async def test_async_publish_many_in_flight_all_acked_with_matching_guids(server, clients):
    sc = await clients.connect(server, "async-pub")
    sub_client = await clients.connect(server, "async-sub")
    rec = Recorder()
    await sub_client.subscribe("async.chan", cb=rec.cb)

    n = 1000
    acks = {}  # publish index -> PubAck
    all_acked = asyncio.Event()

    def handler_for(i):
        async def on_ack(pub_ack):
            assert i not in acks, f"publish {i} acked twice"
            acks[i] = pub_ack
            if len(acks) == n:
                all_acked.set()

        return on_ack

    sent_guids = {}
    for i in range(n):
        before = set(sc._pub_ack_map)
        await sc.publish("async.chan", f"a{i}".encode(), ack_handler=handler_for(i))
        # The guid the client put in the PubMsg is the key it registered the
        # handler under; PubAcks are dispatched by the guid the server returns.
        new = set(sc._pub_ack_map) - before
        if len(new) == 1:
            sent_guids[i] = new.pop()

    await asyncio.wait_for(all_acked.wait(), WAIT)
    assert sorted(acks) == list(range(n))
    assert all(a.error == "" for a in acks.values()), [a.error for a in acks.values() if a.error][:5]
    assert len({a.guid for a in acks.values()}) == n
    for i, guid in sent_guids.items():
        assert acks[i].guid == guid, f"PubAck for publish {i} carries another guid"
    # Almost every publish is still unacknowledged right after it is sent.
    assert len(sent_guids) > n // 2

    msgs = await rec.count(n)
    assert [m.data for m in msgs] == [f"a{i}".encode() for i in range(n)], describe(msgs[:5])
    assert [m.sequence for m in msgs] == list(range(1, n + 1))
