"""Connect, and the duplicate client ID check (PROTOCOL §3.1)."""

import pytest
from stan.aio.errors import StanError

from conftest import Recorder, describe, publish_all


async def test_connect_publish_subscribe_close(server, clients):
    sc = await clients.connect(server, "basic-client")
    rec = Recorder()
    await sc.subscribe("greetings", cb=rec.cb)
    await publish_all(sc, "greetings", [b"hello"])
    msgs = await rec.count(1)
    assert [(m.sequence, m.data) for m in msgs] == [(1, b"hello")]
    assert msgs[0].proto.subject == "greetings"
    assert not msgs[0].proto.redelivered
    assert msgs[0].timestamp > 0
    await sc.close()

    # Once closed, the ID is free again at once (no liveness probe needed).
    again = await clients.connect(server, "basic-client")
    await again.close()


async def test_duplicate_client_id_refused_while_alive_then_accepted_once_gone(server, clients):
    first = await clients.connect(server, "dup-client")
    # A durable subscription owned by the first client: when the server drops
    # that client it must close it as a connection close does (the durable
    # goes offline and can be resumed).
    held = Recorder("first client's durable")
    await first.subscribe("dup.chan", cb=held.cb, durable_name="keep", deliver_all_available=True)
    await publish_all(first, "dup.chan", [b"one"])
    await held.count(1)

    # The first client answers the server's heartbeat probe: refused.
    with pytest.raises(StanError) as exc:
        await clients.connect(server, "dup-client")
    assert str(exc.value) == "stan: clientID already registered"

    # The first client is still registered and working.
    await publish_all(first, "dup.chan", [b"two"])
    await held.count(2)

    # Its NATS connection goes away without a streaming close.
    await first._nc.close()

    # The probe now gets no answer: the new client takes the ID over.
    second = await clients.connect(server, "dup-client")
    await publish_all(second, "dup.chan", [b"three"])

    # The old client's durable was closed, not left active: the new holder of
    # the ID resumes it (start position ignored) and gets only what it missed.
    resumed = Recorder("resumed durable")
    await second.subscribe("dup.chan", cb=resumed.cb, durable_name="keep", deliver_all_available=True)
    await resumed.until(lambda m: any(x.data == b"three" for x in m), "the missed message")
    assert [(m.sequence, m.data) for m in resumed.msgs] == [(3, b"three")], describe(resumed.msgs)


async def test_duplicate_connect_from_same_process_reports_error_and_keeps_first(server, clients):
    first = await clients.connect(server, "dup-twice")
    for _ in range(2):
        with pytest.raises(StanError) as exc:
            await clients.connect(server, "dup-twice")
        assert str(exc.value) == "stan: clientID already registered"
    rec = Recorder()
    await first.subscribe("still.alive", cb=rec.cb)
    await publish_all(first, "still.alive", [b"x"])
    await rec.count(1)


@pytest.mark.parametrize("client_id", ["bad id", "dots.not.allowed", "star*"])
async def test_invalid_client_id(server, clients, client_id):
    with pytest.raises(StanError) as exc:
        await clients.connect(server, client_id)
    assert str(exc.value) == "stan: invalid clientID: only alphanumeric and `-` or `_` characters allowed"
