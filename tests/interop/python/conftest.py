"""Shared fixtures for the nats-py interoperability suite.

The server under test is the binary named by the STAN_SERVER_BIN environment
variable. Each test that asks for it gets a fresh server process listening on
127.0.0.1 and a free port; it is killed at teardown. Its output is printed at
teardown, so pytest shows it next to a failing test.
"""

import asyncio
import os
import socket
import subprocess
import tempfile
import time

import nats
import pytest

# A safety net only: a healthy server is ready in milliseconds.
SERVER_START_TIMEOUT = 30.0
# Generous upper bound for any single wait in the tests.
WAIT = 30.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, binary: str, extra_args):
        self.binary = binary
        self.extra_args = list(extra_args)
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
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with status {self.proc.returncode} before accepting "
                    f"connections: {' '.join(self.argv)}\n{self.output()}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"server did not accept connections on port {self.port} within "
                    f"{SERVER_START_TIMEOUT}s: {' '.join(self.argv)}\n{self.output()}"
                )
            time.sleep(0.02)

    def output(self) -> str:
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture
def start_server():
    """Factory: start_server(*extra_args) -> Server (already accepting TCP)."""
    binary = os.environ.get("STAN_SERVER_BIN")
    if not binary:
        pytest.fail("STAN_SERVER_BIN is not set (path to the server binary under test)")
    started = []

    def _start(*extra_args) -> Server:
        srv = Server(binary, extra_args)
        started.append(srv)
        return srv

    yield _start

    for srv in started:
        srv.stop()
        exited = srv.proc.returncode
        # Captured by pytest and shown only when the test fails.
        print(f"----- server output ({' '.join(srv.argv)}; exit {exited}) -----")
        print(srv.output())
        srv._log.close()


@pytest.fixture
def server(start_server):
    """A server with default options."""
    return start_server()


async def sync(nc) -> None:
    """Return once the server has processed everything `nc` has sent so far.

    nats-py's flush() writes its PING straight to the socket, ahead of commands
    still queued for the client's flusher task (a SUB or UNSUB just issued, or
    recent PUBs), so a single flush() is no barrier for those. They are written
    out while that first PING is in flight, so the PING of a second flush()
    follows them on the wire and its PONG proves they were processed."""
    await nc.flush(timeout=WAIT)
    await nc.flush(timeout=WAIT)


class Connections:
    """Opens nats-py connections and closes them all at teardown."""

    def __init__(self):
        self.conns = []
        self.errors = []

    async def connect(self, url: str, **kwargs):
        async def error_cb(e):
            self.errors.append(e)

        kwargs.setdefault("error_cb", error_cb)
        kwargs.setdefault("allow_reconnect", False)
        kwargs.setdefault("max_reconnect_attempts", 0)
        kwargs.setdefault("connect_timeout", 10)
        nc = await nats.connect(url, **kwargs)
        self.conns.append(nc)
        return nc

    async def close_all(self):
        for nc in self.conns:
            if not nc.is_closed:
                try:
                    await asyncio.wait_for(nc.close(), WAIT)
                except Exception:
                    pass


@pytest.fixture
async def clients():
    c = Connections()
    yield c
    await c.close_all()
