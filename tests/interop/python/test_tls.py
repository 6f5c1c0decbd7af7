"""TLS on client connections: nats-py upgrades after the INFO, with and without a
client certificate, and a server that verifies refuses a client without one."""

import ssl
from pathlib import Path

import pytest

from conftest import WAIT, sync

CERTS = Path(__file__).resolve().parent.parent / "certs"


def server_tls_args(*extra):
    return (
        "--tlscert",
        str(CERTS / "server-cert.pem"),
        "--tlskey",
        str(CERTS / "server-key.pem"),
        *extra,
    )


def client_context(with_certificate: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(CERTS / "ca.pem"))
    if with_certificate:
        ctx.load_cert_chain(str(CERTS / "client-cert.pem"), str(CERTS / "client-key.pem"))
    return ctx


async def roundtrip(nc, subject: str) -> None:
    sub = await nc.subscribe(subject)
    await sync(nc)
    await nc.publish(subject, b"secret")
    assert (await sub.next_msg(timeout=WAIT)).data == b"secret"


async def test_pub_sub_over_tls(start_server, clients):
    srv = start_server("--tls", *server_tls_args())
    publisher = await clients.connect(srv.url, tls=client_context(False), tls_hostname="localhost")
    subscriber = await clients.connect(srv.url, tls=client_context(False), tls_hostname="localhost")
    assert subscriber._server_info.get("tls_required") is True
    sub = await subscriber.subscribe("tls.greetings")
    await sync(subscriber)
    await publisher.publish("tls.greetings", b"hello over TLS")
    assert (await sub.next_msg(timeout=WAIT)).data == b"hello over TLS"


async def test_tls_url_scheme(start_server, clients):
    srv = start_server("--tls", *server_tls_args())
    nc = await clients.connect(f"tls://127.0.0.1:{srv.port}", tls=client_context(False))
    await roundtrip(nc, "tls.scheme")


async def test_verify_accepts_a_client_certificate_from_the_ca(start_server, clients):
    srv = start_server("--tlsverify", *server_tls_args("--tlscacert", str(CERTS / "ca.pem")))
    nc = await clients.connect(srv.url, tls=client_context(True), tls_hostname="localhost")
    assert nc._server_info.get("tls_verify") is True
    await roundtrip(nc, "tls.verified")


async def test_verify_refuses_a_client_without_certificate(start_server, clients):
    srv = start_server("--tlsverify", *server_tls_args("--tlscacert", str(CERTS / "ca.pem")))
    with pytest.raises(Exception):
        nc = await clients.connect(srv.url, tls=client_context(False), tls_hostname="localhost")
        # With TLS 1.3 the refusal may arrive only after the handshake.
        await nc.flush(timeout=5)
    # The server goes on serving clients that present a certificate.
    nc = await clients.connect(srv.url, tls=client_context(True), tls_hostname="localhost")
    await roundtrip(nc, "tls.after_refusal")
