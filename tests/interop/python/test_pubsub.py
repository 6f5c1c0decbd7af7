"""Core NATS publish/subscribe, wildcards, unsubscribe, payload limits and ordering."""

import socket
import threading

import nats.errors
import pytest

from conftest import WAIT, sync

MAX_PAYLOAD = 1024 * 1024


async def drain_until(sub, end_subject: str):
    """Return every message the subscription gets, up to and including the first
    one on `end_subject`. Messages from one publisher reach a subscription in
    publish order, so anything that arrives before the end marker was routed
    to this subscription."""
    got = []
    while True:
        msg = await sub.next_msg(timeout=WAIT)
        got.append(msg)
        if msg.subject == end_subject:
            return got


async def test_pub_sub_between_connections(server, clients):
    sub_nc = await clients.connect(server.url)
    pub_nc = await clients.connect(server.url)
    sub = await sub_nc.subscribe("greet.hello")
    await sync(sub_nc)

    payloads = [b"one", b"two", b"", b"\x00\xff binary \r\n payload"]
    for p in payloads:
        await pub_nc.publish("greet.hello", p)
    await sync(pub_nc)

    got = [await sub.next_msg(timeout=WAIT) for _ in payloads]
    assert [m.data for m in got] == payloads
    assert all(m.subject == "greet.hello" for m in got)
    assert all(not m.reply for m in got)


async def test_reply_subject_is_passed_through(server, clients):
    sub_nc = await clients.connect(server.url)
    pub_nc = await clients.connect(server.url)
    sub = await sub_nc.subscribe("with.reply")
    await sync(sub_nc)

    await pub_nc.publish("with.reply", b"payload", reply="answer.here.please")
    msg = await sub.next_msg(timeout=WAIT)
    assert msg.data == b"payload"
    assert msg.reply == "answer.here.please"


async def test_subscriber_on_publishing_connection_gets_own_messages(server, clients):
    nc = await clients.connect(server.url)
    sub = await nc.subscribe("self.echo")
    await nc.publish("self.echo", b"hello me")
    msg = await sub.next_msg(timeout=WAIT)
    assert msg.data == b"hello me"


async def test_two_subscribers_each_get_every_message(server, clients):
    a_nc = await clients.connect(server.url)
    b_nc = await clients.connect(server.url)
    pub_nc = await clients.connect(server.url)
    a = await a_nc.subscribe("fan.out")
    b = await b_nc.subscribe("fan.out")
    await sync(a_nc)
    await sync(b_nc)

    for i in range(20):
        await pub_nc.publish("fan.out", str(i).encode())
    want = [str(i).encode() for i in range(20)]
    assert [(await a.next_msg(timeout=WAIT)).data for _ in want] == want
    assert [(await b.next_msg(timeout=WAIT)).data for _ in want] == want


async def test_wildcard_star_matches_exactly_one_token(server, clients):
    sub_nc = await clients.connect(server.url)
    pub_nc = await clients.connect(server.url)
    sub = await sub_nc.subscribe("stock.*")
    await sync(sub_nc)

    for subject in [
        "stock",  # too few tokens
        "stock.nyse.ibm",  # too many tokens
        "stocks.ibm",  # different first token
        "other.ibm",
        "stock.ibm",  # matches
        "xstock.ibm",
        "stock.aapl",  # matches
        "stock.end",  # matches, end marker
    ]:
        await pub_nc.publish(subject, subject.encode())
    got = await drain_until(sub, "stock.end")
    assert [m.subject for m in got] == ["stock.ibm", "stock.aapl", "stock.end"]
    assert [m.data for m in got] == [b"stock.ibm", b"stock.aapl", b"stock.end"]


async def test_wildcard_full_matches_one_or_more_trailing_tokens(server, clients):
    sub_nc = await clients.connect(server.url)
    pub_nc = await clients.connect(server.url)
    sub = await sub_nc.subscribe("orders.>")
    await sync(sub_nc)

    for subject in [
        "orders",  # '>' needs at least one more token
        "order.a",
        "x.orders.a",
        "orders.new",  # matches
        "orders.eu.de.berlin",  # matches
        "ordersx.a",
        "orders.end",  # matches, end marker
    ]:
        await pub_nc.publish(subject, b"")
    got = await drain_until(sub, "orders.end")
    assert [m.subject for m in got] == ["orders.new", "orders.eu.de.berlin", "orders.end"]


async def test_wildcard_star_in_the_middle_and_combined(server, clients):
    sub_nc = await clients.connect(server.url)
    pub_nc = await clients.connect(server.url)
    mid = await sub_nc.subscribe("a.*.c")
    combo = await sub_nc.subscribe("*.b.>")
    await sync(sub_nc)

    for subject in ["a.b.c", "a.x.c", "a.b", "a.b.c.d", "z.b.c", "z.q.c", "a.c", "z.b"]:
        await pub_nc.publish(subject, b"")
    await pub_nc.publish("a.end.c", b"")
    await pub_nc.publish("end.b.end", b"")

    got_mid = await drain_until(mid, "a.end.c")
    got_combo = await drain_until(combo, "end.b.end")
    assert [m.subject for m in got_mid] == ["a.b.c", "a.x.c", "a.end.c"]
    assert [m.subject for m in got_combo] == ["a.b.c", "a.b.c.d", "z.b.c", "end.b.end"]


async def test_overlapping_subscriptions_on_one_connection_each_get_a_copy(server, clients):
    sub_nc = await clients.connect(server.url)
    pub_nc = await clients.connect(server.url)
    exact = await sub_nc.subscribe("ov.x.y")
    star = await sub_nc.subscribe("ov.*.y")
    full = await sub_nc.subscribe("ov.>")
    await sync(sub_nc)

    await pub_nc.publish("ov.x.y", b"m")
    for s in (exact, star, full):
        msg = await s.next_msg(timeout=WAIT)
        assert (msg.subject, msg.data) == ("ov.x.y", b"m")


async def test_unsubscribe_stops_delivery(server, clients):
    sub_nc = await clients.connect(server.url)
    pub_nc = await clients.connect(server.url)
    sub = await sub_nc.subscribe("unsub.me")
    marker = await sub_nc.subscribe("unsub.marker")
    await sync(sub_nc)

    await pub_nc.publish("unsub.me", b"before")
    assert (await sub.next_msg(timeout=WAIT)).data == b"before"

    await sub.unsubscribe()
    await sync(sub_nc)
    for _ in range(5):
        await pub_nc.publish("unsub.me", b"after")
    await pub_nc.publish("unsub.marker", b"end")
    await marker.next_msg(timeout=WAIT)
    # The client counts every MSG the server sends, whether or not a subscription
    # still wants it; the marker came after the five, so they would have been counted.
    assert sub_nc.stats["in_msgs"] == 2


async def test_auto_unsubscribe_after_max_msgs(server, clients):
    sub_nc = await clients.connect(server.url)
    pub_nc = await clients.connect(server.url)
    n = 5
    limited = await sub_nc.subscribe("auto.unsub")
    # Sends UNSUB <sid> <n>: the server removes the interest after n messages.
    await limited.unsubscribe(limit=n)
    marker = await sub_nc.subscribe("auto.marker")
    await sync(sub_nc)

    for i in range(n + 7):
        await pub_nc.publish("auto.unsub", str(i).encode())
    await pub_nc.publish("auto.marker", b"end")
    got = [(await limited.next_msg(timeout=WAIT)).data for _ in range(n)]
    assert got == [str(i).encode() for i in range(n)]
    await marker.next_msg(timeout=WAIT)

    # The server itself must stop after n: the client counts every MSG it was
    # sent (n for the limited subscription plus the marker, which was published
    # after all the others).
    assert sub_nc.stats["in_msgs"] == n + 1
    assert limited.delivered == n


async def test_auto_unsubscribe_limit_counts_messages_already_delivered(server, clients):
    sub_nc = await clients.connect(server.url)
    pub_nc = await clients.connect(server.url)
    sub = await sub_nc.subscribe("auto.later")
    marker = await sub_nc.subscribe("auto.later.marker")
    await sync(sub_nc)

    for i in range(3):
        await pub_nc.publish("auto.later", str(i).encode())
    got = [(await sub.next_msg(timeout=WAIT)).data for _ in range(3)]
    # The limit is the total for the subscription: 3 already came, 2 more may.
    await sub.unsubscribe(limit=5)
    await sync(sub_nc)
    for i in range(3, 10):
        await pub_nc.publish("auto.later", str(i).encode())
    await pub_nc.publish("auto.later.marker", b"end")
    got += [(await sub.next_msg(timeout=WAIT)).data for _ in range(2)]
    assert got == [str(i).encode() for i in range(5)]
    await marker.next_msg(timeout=WAIT)

    assert sub_nc.stats["in_msgs"] == 5 + 1


async def test_many_messages_arrive_in_order(server, clients):
    sub_nc = await clients.connect(server.url)
    pub_nc = await clients.connect(server.url)
    n = 10_000
    sub = await sub_nc.subscribe("many.msgs")
    await sync(sub_nc)

    for i in range(n):
        await pub_nc.publish("many.msgs", i.to_bytes(4, "big") + b"x" * 100)
    await sync(pub_nc)

    for i in range(n):
        msg = await sub.next_msg(timeout=WAIT)
        assert int.from_bytes(msg.data[:4], "big") == i
        assert len(msg.data) == 104


async def test_server_announces_max_payload_and_message_of_that_size_is_delivered(
    server, clients
):
    sub_nc = await clients.connect(server.url)
    pub_nc = await clients.connect(server.url)
    assert pub_nc.max_payload == MAX_PAYLOAD
    sub = await sub_nc.subscribe("big.ok")
    await sync(sub_nc)

    payload = bytes(range(256)) * (MAX_PAYLOAD // 256)
    assert len(payload) == MAX_PAYLOAD
    await pub_nc.publish("big.ok", payload)
    msg = await sub.next_msg(timeout=WAIT)
    assert msg.data == payload


async def test_message_larger_than_max_payload_is_refused(server, clients):
    nc = await clients.connect(server.url)
    with pytest.raises(nats.errors.MaxPayloadError):
        await nc.publish("big.no", b"x" * (MAX_PAYLOAD + 1))
    # The connection is still usable afterwards.
    sub = await nc.subscribe("big.after")
    await nc.publish("big.after", b"fine")
    assert (await sub.next_msg(timeout=WAIT)).data == b"fine"


def _read_until(sock: socket.socket, needle: bytes) -> bytes:
    buf = b""
    while needle not in buf:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        buf += chunk
    return buf


def test_server_rejects_oversized_pub_from_a_client_that_does_not_check(server):
    """A client that ignores max_payload sends a too-large PUB: the server answers
    -ERR 'Maximum Payload Violation' and does not deliver it."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as watcher, \
            socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as raw:
        assert _read_until(watcher, b"\r\n").startswith(b"INFO ")
        watcher.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nSUB huge.pub 1\r\nPING\r\n')
        assert b"PONG\r\n" in _read_until(watcher, b"PONG\r\n")

        info = _read_until(raw, b"\r\n")
        assert info.startswith(b"INFO ")
        raw.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\n')
        size = MAX_PAYLOAD + 1
        raw.sendall(b"PUB huge.pub %d\r\n" % size)

        def send_payload():
            try:
                raw.sendall(b"y" * size + b"\r\n")
            except OSError:
                pass  # the server may close before it has read the payload

        sender = threading.Thread(target=send_payload, daemon=True)
        sender.start()
        reply = _read_until(raw, b"Maximum Payload Violation'")
        assert b"-ERR 'Maximum Payload Violation'" in reply, reply[:500]

        # Nothing reached the subscriber: a message published afterwards is the
        # first thing it sees.
        with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as pub:
            _read_until(pub, b"\r\n")
            pub.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nPUB huge.pub 5\r\nafter\r\nPING\r\n')
            assert b"PONG\r\n" in _read_until(pub, b"PONG\r\n")
        got = _read_until(watcher, b"after\r\n")
        assert got == b"MSG huge.pub 1 5\r\nafter\r\n", got[:200]
