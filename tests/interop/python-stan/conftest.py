"""Shared fixtures for the streaming interoperability suite with the official
Python client (asyncio-nats-streaming 0.4.0 over asyncio-nats-client 0.11.5).

The server under test is the binary named by the STAN_SERVER_BIN environment
variable. Each test starts its own server process(es) on 127.0.0.1 and a free
port, with the options it needs; they are killed at teardown and their output
is printed then, so pytest shows it next to a failing test.
"""

import asyncio
import functools
import os
import socket
import subprocess
import tempfile
import time

import pytest

# ---------------------------------------------------------------------------
# asyncio-nats-client 0.11.5 and asyncio-nats-streaming 0.4.0 pass `loop=` to
# asyncio APIs that stopped accepting it in Python 3.10. Wrap those so they
# accept and drop the keyword. This must run before either client is imported.


def _drop_loop(fn):
    @functools.wraps(fn)
    async def wrapper(*args, loop=None, **kwargs):
        return await fn(*args, **kwargs)

    return wrapper


class _Queue(asyncio.Queue):
    def __init__(self, maxsize=0, *, loop=None):
        super().__init__(maxsize)


if not getattr(asyncio, "_stan_interop_loop_shim", False):
    asyncio.Queue = _Queue
    asyncio.sleep = _drop_loop(asyncio.sleep)
    asyncio.wait_for = _drop_loop(asyncio.wait_for)
    asyncio.open_connection = _drop_loop(asyncio.open_connection)
    asyncio._stan_interop_loop_shim = True

from nats.aio.client import Client as NATS  # noqa: E402
from stan.aio.client import Client as STAN  # noqa: E402

# A safety net only: a healthy server is ready in milliseconds.
SERVER_START_TIMEOUT = 30.0
# Generous upper bound for any single wait in the tests.
WAIT = 30.0
# How long the client waits for a connect/subscribe/close response. Generous:
# a healthy server answers in milliseconds.
REQUEST_TIMEOUT = 10
DEFAULT_CLUSTER = "test-cluster"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cluster_of(args) -> str:
    args = list(args)
    for i, a in enumerate(args):
        if a in ("-cid", "--cluster_id") and i + 1 < len(args):
            return args[i + 1]
        for prefix in ("-cid=", "--cluster_id="):
            if a.startswith(prefix):
                return a[len(prefix):]
    return DEFAULT_CLUSTER


class Server:
    def __init__(self, binary: str, extra_args):
        self.binary = binary
        self.extra_args = list(extra_args)
        self.cluster = _cluster_of(self.extra_args)
        self.port = _free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.argv = [self.binary, "-a", "127.0.0.1", "-p", str(self.port), *self.extra_args]
        self._log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def _fail(self, why: str):
        self.stop()
        raise RuntimeError(f"{why}: {' '.join(self.argv)}\n{self.output()}")

    async def wait_ready(self) -> None:
        """Waits until the port accepts connections, then until a streaming
        connect succeeds (the streaming layer starts right after the port
        opens)."""
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                self._fail(f"server exited with status {self.proc.returncode} before accepting connections")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self._fail(f"server did not accept connections within {SERVER_START_TIMEOUT}s")
            await asyncio.sleep(0.02)

        last_err = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._fail(f"server exited with status {self.proc.returncode} during startup")
            nc = NATS()
            try:
                await nc.connect(
                    servers=[self.url], allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=5
                )
                sc = STAN()
                await sc.connect(self.cluster, "readiness-probe", nats=nc, connect_timeout=1)
                await sc.close()
                return
            except Exception as e:  # the streaming layer is not up yet
                last_err = e
                await asyncio.sleep(0.05)
            finally:
                if not nc.is_closed:
                    await nc.close()
        self._fail(f"no streaming connect succeeded within {SERVER_START_TIMEOUT}s (last error: {last_err!r})")

    def output(self) -> str:
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture
async def start_server():
    """Factory: `await start_server(*extra_args)` -> Server, ready for
    streaming connects."""
    binary = os.environ.get("STAN_SERVER_BIN")
    if not binary:
        pytest.fail("STAN_SERVER_BIN is not set (path to the server binary under test)")
    started = []

    async def _start(*extra_args) -> Server:
        srv = Server(binary, extra_args)
        started.append(srv)
        await srv.wait_ready()
        return srv

    yield _start

    for srv in started:
        srv.stop()
        # Captured by pytest and shown only when the test fails.
        print(f"----- server output ({' '.join(srv.argv)}; exit {srv.proc.returncode}) -----")
        print(srv.output())
        srv._log.close()


@pytest.fixture
async def server(start_server):
    """A server with default options."""
    return await start_server()


class Clients:
    """Opens streaming connections (each over its own NATS connection) and
    closes whatever is left open at teardown."""

    def __init__(self):
        self.pairs = []  # (stan client, nats connection)
        self.errors = []

    async def nats(self, server: Server) -> NATS:
        async def error_cb(e):
            self.errors.append(e)

        nc = NATS()
        await nc.connect(
            servers=[server.url],
            allow_reconnect=False,
            max_reconnect_attempts=0,
            connect_timeout=10,
            error_cb=error_cb,
        )
        return nc

    async def connect(self, server: Server, client_id: str, **kwargs) -> STAN:
        """Connects a streaming client; raises the client's error (StanError)
        if the server refuses. The NATS connection is `sc._nc`."""
        nc = await self.nats(server)
        sc = STAN()
        kwargs.setdefault("connect_timeout", REQUEST_TIMEOUT)
        self.pairs.append((sc, nc))
        await sc.connect(server.cluster, client_id, nats=nc, **kwargs)
        return sc

    async def close_all(self):
        for sc, nc in self.pairs:
            if not nc.is_closed:
                try:
                    await asyncio.wait_for(sc.close(), WAIT)
                except Exception:
                    pass
            # Stops the client's background tasks (pinger, message loops).
            try:
                await asyncio.wait_for(sc._close(), WAIT)
            except Exception:
                pass
            if not nc.is_closed:
                try:
                    await asyncio.wait_for(nc.close(), WAIT)
                except Exception:
                    pass


@pytest.fixture
async def clients():
    c = Clients()
    yield c
    await c.close_all()


async def settle() -> None:
    """Lets the client's internal queues hand every message already read from
    the socket to the subscription callbacks (each hop is one loop turn)."""
    for _ in range(20):
        await asyncio.sleep(0)


async def barrier(*scs) -> None:
    """Returns once every message the server had sent to these clients' NATS
    connections before now has reached the subscription callbacks: a
    PING/PONG round trip on each connection, then `settle()`."""
    for sc in scs:
        await sc._nc.flush(timeout=WAIT)
    await settle()


class Recorder:
    """A subscription callback that records every message. `until(pred)`
    returns once pred(messages) holds (or fails after WAIT seconds)."""

    def __init__(self, name: str = "subscription"):
        self.name = name
        self.msgs = []
        self._changed = asyncio.Event()
        self.on_message = None  # optional extra coroutine, called per message

    async def cb(self, msg):
        self.msgs.append(msg)
        if self.on_message is not None:
            await self.on_message(msg)
        self._changed.set()

    async def until(self, pred, what: str = "messages"):
        async def loop():
            while not pred(self.msgs):
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(loop(), WAIT)
        except asyncio.TimeoutError:
            raise AssertionError(
                f"{self.name}: timed out after {WAIT}s waiting for {what}; "
                f"got {describe(self.msgs)}"
            ) from None
        return self.msgs

    async def count(self, n: int):
        return await self.until(lambda m: len(m) >= n, f"{n} messages")

    async def seq(self, sequence: int):
        return await self.until(lambda m: any(x.sequence == sequence for x in m), f"sequence {sequence}")

    def seqs(self):
        return [m.sequence for m in self.msgs]


def describe(msgs):
    return [
        (m.sequence, m.data.decode("utf-8", "replace"), "redelivered" if m.proto.redelivered else "new")
        for m in msgs
    ]


async def publish_all(sc, channel: str, payloads):
    """Synchronous publishes: each waits for its PubAck. Returns the acks."""
    acks = []
    for p in payloads:
        ack = await sc.publish(channel, p if isinstance(p, bytes) else str(p).encode(), ack_wait=WAIT)
        assert ack.error == "", f"publish to {channel!r} failed: {ack.error}"
        acks.append(ack)
    return acks
