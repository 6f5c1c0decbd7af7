"""Request/reply, no-responders status, and message headers."""

import asyncio

import nats.errors
import pytest

from conftest import WAIT, sync


async def start_responder(nc, subject, queue=""):
    async def handler(msg):
        await nc.publish(msg.reply, b"re:" + msg.data)

    sub = await nc.subscribe(subject, queue=queue, cb=handler)
    await sync(nc)
    return sub


async def test_request_reply(server, clients):
    svc = await clients.connect(server.url)
    cli = await clients.connect(server.url)
    await start_responder(svc, "svc.echo")

    resp = await cli.request("svc.echo", b"hello", timeout=WAIT)
    assert resp.data == b"re:hello"


async def test_many_concurrent_requests_get_their_own_answers(server, clients):
    svc = await clients.connect(server.url)
    cli = await clients.connect(server.url)
    await start_responder(svc, "svc.many")

    reqs = [cli.request("svc.many", str(i).encode(), timeout=WAIT) for i in range(200)]
    answers = await asyncio.gather(*reqs)
    assert [a.data for a in answers] == [b"re:%d" % i for i in range(200)]


async def test_old_style_request_with_unique_inbox(server, clients):
    svc = await clients.connect(server.url)
    cli = await clients.connect(server.url)
    await start_responder(svc, "svc.old")

    resp = await cli.request("svc.old", b"x", timeout=WAIT, old_style=True)
    assert resp.data == b"re:x"


async def test_request_to_queue_group_responders_gets_one_answer(server, clients):
    cli = await clients.connect(server.url)
    answered = []
    for name in ("a", "b", "c"):
        nc = await clients.connect(server.url)

        async def handler(msg, nc=nc, name=name):
            answered.append(name)
            await nc.publish(msg.reply, name.encode())

        await nc.subscribe("svc.q", queue="responders", cb=handler)
        await sync(nc)

    for _ in range(30):
        resp = await cli.request("svc.q", b"", timeout=WAIT)
        assert resp.data in (b"a", b"b", b"c")
    # One responder per request: each answer follows exactly one handler call.
    assert len(answered) == 30


async def test_no_responders(server, clients):
    cli = await clients.connect(server.url)
    with pytest.raises(nats.errors.NoRespondersError):
        # The timeout is only a safety net: the server answers at once with a
        # 503 status, which must not turn into a timeout.
        await cli.request("nobody.listens.here", b"anyone?", timeout=WAIT)


async def test_no_responders_old_style(server, clients):
    cli = await clients.connect(server.url)
    with pytest.raises(nats.errors.NoRespondersError):
        await cli.request("nobody.listens.old", b"anyone?", timeout=WAIT, old_style=True)


async def test_no_responders_after_responder_left(server, clients):
    svc = await clients.connect(server.url)
    cli = await clients.connect(server.url)
    sub = await start_responder(svc, "svc.gone")
    assert (await cli.request("svc.gone", b"1", timeout=WAIT)).data == b"re:1"

    await sub.unsubscribe()
    await sync(svc)
    with pytest.raises(nats.errors.NoRespondersError):
        await cli.request("svc.gone", b"2", timeout=WAIT)


async def test_headers_published_and_received(server, clients):
    sub_nc = await clients.connect(server.url)
    pub_nc = await clients.connect(server.url)
    sub = await sub_nc.subscribe("hdr.test")
    await sync(sub_nc)

    headers = {
        "X-Trace-Id": "abc-123",
        "Content-Type": "application/json",
        "X-Colon": "a:b:c",
        "X-Spaces": "some value with spaces",
    }
    await pub_nc.publish("hdr.test", b'{"k":1}', headers=headers)
    await pub_nc.publish("hdr.test", b"", headers={"Only": "headers"})
    await pub_nc.publish("hdr.test", b"no headers")

    m1 = await sub.next_msg(timeout=WAIT)
    assert m1.data == b'{"k":1}'
    assert m1.headers == headers
    m2 = await sub.next_msg(timeout=WAIT)
    assert m2.data == b""
    assert m2.headers == {"Only": "headers"}
    m3 = await sub.next_msg(timeout=WAIT)
    assert m3.data == b"no headers"
    assert not m3.headers


async def test_headers_with_wildcard_and_queue_subscribers(server, clients):
    sub_nc = await clients.connect(server.url)
    pub_nc = await clients.connect(server.url)
    wild = await sub_nc.subscribe("hdrw.*")
    queued = await sub_nc.subscribe("hdrw.x", queue="q")
    await sync(sub_nc)

    await pub_nc.publish("hdrw.x", b"body", headers={"K": "v"}, reply="r.inbox")
    for s in (wild, queued):
        m = await s.next_msg(timeout=WAIT)
        assert (m.subject, m.data, m.reply, m.headers) == ("hdrw.x", b"body", "r.inbox", {"K": "v"})


async def test_request_with_headers(server, clients):
    svc = await clients.connect(server.url)
    cli = await clients.connect(server.url)
    seen = []

    async def handler(msg):
        seen.append(dict(msg.headers or {}))
        await svc.publish(
            msg.reply,
            b"ok:" + msg.data,
            headers={"X-Reply-To-Trace": msg.headers.get("X-Trace", "")},
        )

    await svc.subscribe("svc.hdr", cb=handler)
    await sync(svc)

    resp = await cli.request("svc.hdr", b"ping", timeout=WAIT, headers={"X-Trace": "t-42"})
    assert resp.data == b"ok:ping"
    assert resp.headers == {"X-Reply-To-Trace": "t-42"}
    assert seen == [{"X-Trace": "t-42"}]
