"""Accounts: two subject spaces joined by a service and a stream import, and a
user whose password is a bcrypt hash."""

import asyncio

import nats.errors
import pytest

from conftest import WAIT, sync

# bcrypt of "b-secret", cost 4.
B_HASH = "$2b$04$Z/NDDF68Gt5tITwoh5d/.usZtZpa8rYKG85zGmN/4dOyA67H/vlIm"

CONF = """
accounts {
  A: {
    users: [ {user: a, password: a-secret}, {user: stan, password: stan} ]
    exports: [ {service: "svc.echo"}, {stream: "events.>"} ]
  }
  B: {
    users: [ {user: b, password: "%s"} ]
    imports: [
      {service: {account: A, subject: "svc.echo"}, to: "echo"}
      {stream: {account: A, subject: "events.>"}, prefix: "from_a"}
    ]
  }
}
streaming { username: stan, password: stan }
""" % B_HASH


@pytest.fixture
def accounts_server(start_server, tmp_path):
    conf = tmp_path / "accounts.conf"
    conf.write_text(CONF)
    return start_server("-c", str(conf))


async def test_service_and_stream_imports_cross_accounts_and_nothing_else(
    accounts_server, clients
):
    url = accounts_server.url
    a = await clients.connect(url, user="a", password="a-secret")
    b = await clients.connect(url, user="b", password="b-secret")

    async def echo(msg):
        await a.publish(msg.reply, b"re:" + msg.data)

    await a.subscribe("svc.echo", cb=echo)
    await sync(a)
    resp = await b.request("echo", b"hello", timeout=WAIT)
    assert resp.data == b"re:hello"

    everything_b = await b.subscribe(">")
    imported = await b.subscribe("from_a.events.*")
    await sync(b)
    await a.publish("events.one", b"shared")
    await a.publish("private", b"A only")
    await sync(a)
    msg = await imported.next_msg(timeout=WAIT)
    assert (msg.subject, msg.data) == ("from_a.events.one", b"shared")
    seen = await everything_b.next_msg(timeout=WAIT)
    assert seen.subject == "from_a.events.one"
    await asyncio.sleep(0.2)
    with pytest.raises(nats.errors.TimeoutError):
        await everything_b.next_msg(timeout=0.2)

    # B's own subject of that name is not A's service.
    await everything_b.unsubscribe()
    await sync(b)
    with pytest.raises(nats.errors.NoRespondersError):
        await b.request("svc.echo", b"x", timeout=WAIT)


async def test_bcrypt_password_is_checked(accounts_server, clients):
    with pytest.raises(Exception) as refused:
        await clients.connect(accounts_server.url, user="b", password=B_HASH)
    assert "authorization violation" in str(refused.value).lower() or isinstance(
        refused.value, nats.errors.AuthorizationError
    ), repr(refused.value)
