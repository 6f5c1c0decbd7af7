"""Authentication: user/password and token, accepted and refused."""

import nats.errors
import pytest

from conftest import WAIT, sync


def assert_authorization_violation(exc: BaseException) -> None:
    assert isinstance(exc, nats.errors.AuthorizationError) or (
        "authorization violation" in str(exc).lower()
    ), f"expected an authorization violation, got {type(exc).__name__}: {exc!r}"


async def roundtrip(nc, subject: str) -> None:
    sub = await nc.subscribe(subject)
    await nc.publish(subject, b"authed")
    assert (await sub.next_msg(timeout=WAIT)).data == b"authed"


async def test_user_password_accepted(start_server, clients):
    srv = start_server("--user", "alice", "--pass", "s3cret")
    nc = await clients.connect(srv.url, user="alice", password="s3cret")
    assert nc.is_connected
    await roundtrip(nc, "auth.user")


async def test_user_password_in_url_accepted(start_server, clients):
    srv = start_server("--user", "alice", "--pass", "s3cret")
    nc = await clients.connect(f"nats://alice:s3cret@127.0.0.1:{srv.port}")
    await roundtrip(nc, "auth.url")


@pytest.mark.parametrize(
    "creds",
    [
        {"user": "alice", "password": "wrong"},
        {"user": "mallory", "password": "s3cret"},
        {},
    ],
    ids=["wrong-password", "wrong-user", "no-credentials"],
)
async def test_user_password_refused(start_server, clients, creds):
    srv = start_server("--user", "alice", "--pass", "s3cret")
    with pytest.raises(nats.errors.Error) as excinfo:
        await clients.connect(srv.url, **creds)
    assert_authorization_violation(excinfo.value)


async def test_token_accepted(start_server, clients):
    srv = start_server("--auth", "tok-123")
    nc = await clients.connect(srv.url, token="tok-123")
    assert nc.is_connected
    await roundtrip(nc, "auth.token")


@pytest.mark.parametrize(
    "creds",
    [{"token": "not-the-token"}, {}],
    ids=["wrong-token", "missing-token"],
)
async def test_token_refused(start_server, clients, creds):
    srv = start_server("--auth", "tok-123")
    with pytest.raises(nats.errors.Error) as excinfo:
        await clients.connect(srv.url, **creds)
    assert_authorization_violation(excinfo.value)


async def test_refused_client_does_not_disturb_authorized_one(start_server, clients):
    srv = start_server("--auth", "tok-123")
    good = await clients.connect(srv.url, token="tok-123")
    sub = await good.subscribe("auth.mixed")
    await sync(good)
    with pytest.raises(nats.errors.Error):
        await clients.connect(srv.url, token="nope")
    await good.publish("auth.mixed", b"still here")
    assert (await sub.next_msg(timeout=WAIT)).data == b"still here"
