"""Queue groups: each message goes to exactly one member; a durable group
survives all its members leaving by close (PROTOCOL §3.4, §3.8)."""

import asyncio
from collections import Counter

from conftest import WAIT, Recorder, barrier, describe, publish_all

CHAN = "queue.chan"


def group_seqs(recs):
    return [m.sequence for r in recs for m in r.msgs]


async def join(server, clients, client_id, **opts):
    sc = await clients.connect(server, client_id)
    rec = Recorder(client_id)
    sub = await sc.subscribe(CHAN, cb=rec.cb, queue="workers", **opts)
    return sc, rec, sub


async def wait_group(recs, n):
    """Waits until the members between them have received sequences 1..n."""

    async def loop():
        while len(set(group_seqs(recs))) < n:
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(loop(), WAIT)
    except asyncio.TimeoutError:
        raise AssertionError(
            f"the group received {sorted(set(group_seqs(recs)))} instead of sequences 1..{n}"
        ) from None


async def test_each_message_goes_to_exactly_one_member(server, clients):
    members = [await join(server, clients, f"member-{i}") for i in range(3)]
    recs = [r for _, r, _ in members]
    pub = await clients.connect(server, "queue-publisher")
    n = 60
    await publish_all(pub, CHAN, [f"w{i}" for i in range(1, n + 1)])

    await wait_group(recs, n)
    # Deliveries for a message are sent before its PubAck; a round trip on
    # each member's connection brings in anything still on its way.
    await barrier(*[sc for sc, _, _ in members])

    seqs = group_seqs(recs)
    dupes = [s for s, c in Counter(seqs).items() if c > 1]
    assert not dupes, f"delivered to more than one member: {dupes}"
    assert sorted(seqs) == list(range(1, n + 1))
    for r in recs:
        assert all(not m.proto.redelivered for m in r.msgs), describe(r.msgs)
        # Each member's own share arrives in sequence order.
        assert r.seqs() == sorted(r.seqs())
    spread = [len(r.msgs) for r in recs]
    assert all(c > 0 for c in spread), f"a member got nothing: {spread}"


async def test_durable_queue_group_survives_all_members_leaving_by_close(server, clients):
    a_sc, a_rec, _ = await join(server, clients, "dq-a", durable_name="dq", deliver_all_available=True)
    b_sc, b_rec, b_sub = await join(server, clients, "dq-b", durable_name="dq", deliver_all_available=True)
    pub = await clients.connect(server, "queue-publisher")
    await publish_all(pub, CHAN, [f"m{i}" for i in range(1, 7)])
    await wait_group([a_rec, b_rec], 6)
    await barrier(a_sc, b_sc)
    assert sorted(group_seqs([a_rec, b_rec])) == list(range(1, 7))

    # One member leaves by closing its connection, the last one by closing
    # its subscription: the group is kept.
    await a_sc.close()
    await b_sub.close()
    await publish_all(pub, CHAN, ["m7", "m8", "m9"])

    # A member from another client joins: the group resumes where it was (its
    # start position is ignored).
    c_sc, c_rec, _ = await join(server, clients, "dq-c", durable_name="dq", deliver_all_available=True)
    await c_rec.seq(9)
    await publish_all(pub, CHAN, ["m10"])
    await c_rec.seq(10)
    assert [(m.sequence, m.data.decode(), bool(m.proto.redelivered)) for m in c_rec.msgs] == [
        (7, "m7", False),
        (8, "m8", False),
        (9, "m9", False),
        (10, "m10", False),
    ], describe(c_rec.msgs)


async def test_non_durable_queue_group_is_gone_once_all_members_left(server, clients):
    a_sc, a_rec, a_sub = await join(server, clients, "q-a", deliver_all_available=True)
    pub = await clients.connect(server, "queue-publisher")
    await publish_all(pub, CHAN, ["m1", "m2"])
    await a_rec.seq(2)
    await a_sub.close()
    await publish_all(pub, CHAN, ["m3"])

    # A new group of the same name starts from its own start position.
    _, b_rec, _ = await join(server, clients, "q-b", deliver_all_available=True)
    await b_rec.seq(3)
    assert [m.sequence for m in b_rec.msgs] == [1, 2, 3], describe(b_rec.msgs)


async def test_unsubscribe_of_last_durable_queue_member_destroys_the_group(server, clients):
    _, a_rec, a_sub = await join(server, clients, "dq-a", durable_name="dq", deliver_all_available=True)
    pub = await clients.connect(server, "queue-publisher")
    await publish_all(pub, CHAN, ["m1", "m2"])
    await a_rec.seq(2)
    await a_sub.unsubscribe()
    await publish_all(pub, CHAN, ["m3"])

    _, b_rec, _ = await join(server, clients, "dq-b", durable_name="dq", deliver_all_available=True)
    await b_rec.seq(3)
    assert [m.sequence for m in b_rec.msgs] == [1, 2, 3], describe(b_rec.msgs)
