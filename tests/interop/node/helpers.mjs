// Shared helpers for the Node interoperability suite: start the server under
// test (the binary named by STAN_SERVER_BIN) on 127.0.0.1 and a free port,
// open client connections, and clean everything up afterwards.

import { spawn } from "node:child_process";
import net from "node:net";
import { connect } from "nats";

// Safety nets only: a healthy server is ready, and answers, in milliseconds.
export const WAIT_MS = 30_000;
const START_TIMEOUT_MS = 30_000;

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function tryConnect(port) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: "127.0.0.1", port });
    sock.once("connect", () => {
      sock.destroy();
      resolve(true);
    });
    sock.once("error", () => {
      sock.destroy();
      resolve(false);
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function startServer(extraArgs = []) {
  const bin = process.env.STAN_SERVER_BIN;
  if (!bin) {
    throw new Error("STAN_SERVER_BIN is not set (path to the server binary under test)");
  }
  const port = await freePort();
  const argv = ["-a", "127.0.0.1", "-p", String(port), ...extraArgs];
  const child = spawn(bin, argv, { stdio: ["ignore", "pipe", "pipe"] });
  const chunks = [];
  child.stdout.on("data", (d) => chunks.push(d));
  child.stderr.on("data", (d) => chunks.push(d));
  let exited = null;
  const exitedP = new Promise((resolve) => {
    child.once("exit", (code, signal) => {
      exited = { code, signal };
      resolve();
    });
    child.once("error", (err) => {
      exited = { error: err };
      resolve();
    });
  });

  const server = {
    port,
    url: `nats://127.0.0.1:${port}`,
    cmdline: [bin, ...argv].join(" "),
    output: () => Buffer.concat(chunks).toString("utf8"),
    async stop() {
      if (exited === null) {
        child.kill("SIGKILL");
      }
      await exitedP;
    },
  };

  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (exited !== null) {
      throw new Error(
        `server exited (${JSON.stringify(exited)}) before accepting connections: ` +
          `${server.cmdline}\n${server.output()}`,
      );
    }
    if (await tryConnect(port)) {
      return server;
    }
    if (Date.now() > deadline) {
      await server.stop();
      throw new Error(
        `server did not accept connections on port ${port} within ${START_TIMEOUT_MS} ms: ` +
          `${server.cmdline}\n${server.output()}`,
      );
    }
    await sleep(20);
  }
}

// Runs `body(ctx)` against a fresh server. ctx.server is the server, and
// ctx.connect(opts) opens a connection that is closed afterwards. If the body
// throws, the error is passed on with the server's output attached.
export async function withServer(extraArgs, body) {
  const server = await startServer(extraArgs);
  const conns = [];
  const ctx = {
    server,
    async connect(opts = {}) {
      const nc = await connect({
        servers: server.url,
        reconnect: false,
        timeout: WAIT_MS,
        ...opts,
      });
      conns.push(nc);
      return nc;
    },
  };
  try {
    await body(ctx);
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    throw new Error(
      `${msg}\n----- server output (${server.cmdline}) -----\n${server.output()}`,
      { cause: err },
    );
  } finally {
    for (const nc of conns) {
      if (!nc.isClosed()) {
        await nc.close().catch(() => {});
      }
    }
    await server.stop();
  }
}

// Subscribes with a callback and records every message. `until(pred)` resolves
// (with the list so far) once pred(list) holds; `count(n)` once n arrived.
export function collect(nc, subject, opts = {}) {
  const msgs = [];
  const errors = [];
  let waiters = [];
  const check = () => {
    waiters = waiters.filter(({ pred, resolve }) => {
      if (pred(msgs)) {
        resolve(msgs);
        return false;
      }
      return true;
    });
  };
  const sub = nc.subscribe(subject, {
    ...opts,
    callback: (err, m) => {
      if (err) errors.push(err);
      else msgs.push(m);
      check();
    },
  });
  const until = (pred, what = `messages on ${subject}`) => {
    const p = new Promise((resolve) => {
      waiters.push({ pred, resolve });
      check();
    });
    return within(p, WAIT_MS, `waiting for ${what}`);
  };
  return {
    sub,
    msgs,
    errors,
    until,
    count: (n) => until((l) => l.length >= n, `${n} messages on ${subject}`),
    untilSubject: (s) => until((l) => l.some((m) => m.subject === s), `a message on ${s}`),
  };
}

// Rejects if `p` has not settled within `ms` (a safety net against hangs).
export function within(p, ms = WAIT_MS, what = "operation") {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}
