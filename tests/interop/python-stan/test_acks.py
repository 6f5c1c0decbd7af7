"""Manual acks: redelivery after the ack wait, and MaxInFlight
(PROTOCOL §3.4 to §3.7)."""

from conftest import Recorder, barrier, describe, publish_all

CHAN = "acks.chan"


def summary(msgs):
    return [(m.sequence, m.data.decode(), bool(m.proto.redelivered)) for m in msgs]


async def test_unacked_message_is_redelivered_until_acked(server, clients):
    sc = await clients.connect(server, "ack-client")
    rec = Recorder()
    await sc.subscribe(CHAN, cb=rec.cb, manual_acks=True, ack_wait=1)
    await publish_all(sc, CHAN, ["m1"])

    first = (await rec.count(1))[0]
    assert (first.sequence, first.data, bool(first.proto.redelivered)) == (1, b"m1", False)
    # (This client's MsgProto predates the redeliveryCount field; the Node
    # suite checks it.)

    # Not acked: it comes again after the ack wait, flagged as redelivered.
    await rec.count(2)
    again = rec.msgs[1]
    assert (again.sequence, again.data, bool(again.proto.redelivered)) == (1, b"m1", True), describe(rec.msgs)
    await sc.ack(again)

    # A second message, also left unacknowledged, is redelivered one ack wait
    # later. Had m1 still been pending, its earlier expiration would have
    # brought it back before m2's redelivery.
    await publish_all(sc, CHAN, ["m2"])
    m2_first = await rec.until(lambda ms: any(m.sequence == 2 for m in ms), "m2")
    m2_index = next(i for i, m in enumerate(m2_first) if m.sequence == 2)
    await rec.until(
        lambda ms: any(m.sequence == 2 and m.proto.redelivered for m in ms), "the redelivery of m2"
    )
    await sc.ack(rec.msgs[-1])
    await barrier(sc)
    late_m1 = [m for m in rec.msgs[m2_index:] if m.sequence == 1]
    assert not late_m1, f"m1 was redelivered after it was acked: {describe(rec.msgs)}"
    m2s = [m for m in rec.msgs if m.sequence == 2]
    assert not m2s[0].proto.redelivered and all(m.proto.redelivered for m in m2s[1:]), describe(rec.msgs)


async def test_max_in_flight_holds_messages_until_acked(server, clients):
    sc = await clients.connect(server, "mif-client")
    rec = Recorder()
    acked = set()
    violations = []

    async def check_in_flight(msg):
        # Called for each arrival: what this client has not acked yet can only
        # be more than the server counts as pending, never less.
        outstanding = [m.sequence for m in rec.msgs[:-1] if m.sequence not in acked]
        if len(outstanding) >= 2:
            violations.append((msg.sequence, outstanding))

    rec.on_message = check_in_flight
    await sc.subscribe(CHAN, cb=rec.cb, manual_acks=True, max_inflight=2)

    async def ack(seq):
        msg = next(m for m in rec.msgs if m.sequence == seq)
        acked.add(seq)
        await sc.ack(msg)

    # The subscriber and the publisher share a connection: the server sends
    # the deliveries a publish causes before its PubAck, so once the last
    # PubAck is in, everything that could be delivered has arrived.
    await publish_all(sc, CHAN, [f"m{i}" for i in range(1, 6)])
    await barrier(sc)
    assert rec.seqs() == [1, 2], describe(rec.msgs)

    await ack(1)
    await rec.seq(3)
    await publish_all(sc, CHAN, ["m6"])
    await barrier(sc)
    assert rec.seqs() == [1, 2, 3], describe(rec.msgs)

    await ack(2)
    await ack(3)
    await rec.seq(5)
    await publish_all(sc, CHAN, ["m7"])
    await barrier(sc)
    assert rec.seqs() == [1, 2, 3, 4, 5], describe(rec.msgs)

    for seq in (4, 5):
        await ack(seq)
    await rec.seq(7)
    await ack(6)
    await ack(7)
    assert rec.seqs() == [1, 2, 3, 4, 5, 6, 7], describe(rec.msgs)
    assert not violations, f"arrivals while 2 were unacknowledged: {violations}"
    assert not any(m.proto.redelivered for m in rec.msgs)
