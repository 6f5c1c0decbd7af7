// Shared helpers for the streaming interoperability suite with the official
// Node client (node-nats-streaming 0.3.2 over nats 1.x): start the server under
// test (the binary named by STAN_SERVER_BIN) on 127.0.0.1 and a free port,
// open streaming connections, subscribe and publish with promises, and clean
// everything up afterwards.

import { spawn } from "node:child_process";
import net from "node:net";
import stan from "node-nats-streaming";

export const { StartPosition } = stan;

// Safety nets only: a healthy server is ready, and answers, in milliseconds.
export const WAIT_MS = 30_000;
const START_TIMEOUT_MS = 30_000;
// How long the client waits for a connect/subscribe/close response.
const REQUEST_TIMEOUT_MS = 10_000;
const DEFAULT_CLUSTER = "test-cluster";

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function freePort() {
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

export function tryConnect(port) {
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

function clusterOf(args) {
  for (let i = 0; i < args.length; i++) {
    if ((args[i] === "-cid" || args[i] === "--cluster_id") && i + 1 < args.length) {
      return args[i + 1];
    }
    const m = /^--?(?:cid|cluster_id)=(.*)$/.exec(args[i]);
    if (m) return m[1];
  }
  return DEFAULT_CLUSTER;
}

// Rejects if `p` has not settled within `ms` (a safety net against hangs).
export function within(p, ms = WAIT_MS, what = "operation") {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

// Opens a streaming connection. Resolves with the client once connected;
// rejects with the server's error (an Error whose message is the text the
// server sent) otherwise.
export function stanConnect(server, clientId, opts = {}) {
  const sc = stan.connect(server.cluster, clientId, {
    url: server.url,
    reconnect: false,
    maxReconnectAttempts: 0,
    connectTimeout: REQUEST_TIMEOUT_MS,
    ackTimeout: WAIT_MS,
    ...opts,
  });
  sc.errors = [];
  const p = new Promise((resolve, reject) => {
    const onConnect = () => {
      sc.removeListener("error", onError);
      resolve(sc);
    };
    const onError = (err) => {
      sc.removeListener("connect", onConnect);
      reject(err instanceof Error ? err : new Error(String(err)));
    };
    sc.once("connect", onConnect);
    sc.once("error", onError);
  });
  // Errors after the connect are recorded instead of crashing the process.
  sc.on("error", (err) => sc.errors.push(err));
  return within(p, WAIT_MS, `streaming connect of ${clientId}`);
}

// Closes a streaming connection with a CloseRequest; resolves once the server
// answered (rejects with its error, if any).
export function stanClose(sc) {
  return within(
    new Promise((resolve, reject) => {
      sc.once("close", (err) => (err ? reject(err) : resolve()));
      sc.close();
    }),
    WAIT_MS,
    "streaming close",
  );
}

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
    cluster: clusterOf(extraArgs),
    cmdline: [bin, ...argv].join(" "),
    output: () => Buffer.concat(chunks).toString("utf8"),
    async stop() {
      if (exited === null) {
        child.kill("SIGKILL");
      }
      await exitedP;
    },
  };

  const fail = async (why) => {
    await server.stop();
    throw new Error(`${why}: ${server.cmdline}\n${server.output()}`);
  };

  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (exited !== null) {
      await fail(`server exited (${JSON.stringify(exited)}) before accepting connections`);
    }
    if (await tryConnect(port)) break;
    if (Date.now() > deadline) {
      await fail(`server did not accept connections within ${START_TIMEOUT_MS} ms`);
    }
    await sleep(20);
  }

  // The streaming layer starts right after the port opens: retry a streaming
  // connect until one succeeds.
  let lastErr = null;
  for (;;) {
    if (exited !== null) {
      await fail(`server exited (${JSON.stringify(exited)}) during startup`);
    }
    try {
      const probe = await stanConnect(server, "readiness-probe", { connectTimeout: 1000 });
      await stanClose(probe);
      return server;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) {
      await fail(`no streaming connect succeeded within ${START_TIMEOUT_MS} ms (last error: ${lastErr})`);
    }
    await sleep(50);
  }
}

// Runs `body(ctx)` against a fresh server started with `extraArgs`.
// ctx.server is the server; ctx.connect(clientId, opts) opens a streaming
// connection that is closed afterwards. If the body throws, the error is
// passed on with the server's output attached.
export async function withServer(extraArgs, body) {
  const server = await startServer(extraArgs);
  const conns = [];
  const ctx = {
    server,
    async connect(clientId, opts = {}) {
      const sc = await stanConnect(server, clientId, opts);
      conns.push(sc);
      return sc;
    },
  };
  try {
    await body(ctx);
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    throw new Error(`${msg}\n----- server output (${server.cmdline}) -----\n${server.output()}`, {
      cause: err,
    });
  } finally {
    for (const sc of conns) {
      if (!sc.isClosed() && !sc.nc.closed) {
        await stanClose(sc).catch(() => {});
      }
      if (sc.nc && !sc.nc.closed) {
        sc.nc.close();
      }
    }
    await server.stop();
  }
}

// Synchronous-style publish: resolves with the guid once the PubAck came back
// without error; rejects with an Error carrying the PubAck's error otherwise.
export function publish(sc, channel, data) {
  return within(
    new Promise((resolve, reject) => {
      const sent = sc.publish(channel, data, (err, guid) => {
        if (err) reject(err instanceof Error ? err : new Error(String(err)));
        else if (guid !== sent) reject(new Error(`PubAck guid ${guid} for publish ${sent}`));
        else resolve(guid);
      });
    }),
    WAIT_MS,
    `publish to ${channel}`,
  );
}

// Publishes each payload in turn, waiting for each PubAck.
export async function publishAll(sc, channel, payloads) {
  const guids = [];
  for (const p of payloads) guids.push(await publish(sc, channel, String(p)));
  return guids;
}

// Subscribes and records every message. Resolves once the server accepted the
// subscription; rejects with the server's error otherwise. The result has
// `msgs`, `until(pred)`, `count(n)`, `seq(s)`, `seqs()` and `sub`.
export function subscribe(sc, channel, { queue, opts, onMessage } = {}) {
  const msgs = [];
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
  const options = opts ?? sc.subscriptionOptions();
  const sub = queue === undefined ? sc.subscribe(channel, options) : sc.subscribe(channel, queue, options);
  const rec = {
    sub,
    msgs,
    errors: [],
    until(pred, what = `messages on ${channel}`) {
      const p = new Promise((resolve) => {
        waiters.push({ pred, resolve });
        check();
      });
      return within(p, WAIT_MS, `waiting for ${what} (got ${JSON.stringify(describe(msgs))})`);
    },
    count(n) {
      return rec.until((l) => l.length >= n, `${n} messages on ${channel}`);
    },
    seq(s) {
      return rec.until((l) => l.some((m) => m.getSequence() === s), `sequence ${s} on ${channel}`);
    },
    seqs: () => msgs.map((m) => m.getSequence()),
  };
  sub.on("message", (m) => {
    msgs.push(m);
    if (onMessage) onMessage(m, rec);
    check();
  });
  return within(
    new Promise((resolve, reject) => {
      sub.once("ready", () => {
        sub.on("error", (err) => rec.errors.push(err));
        resolve(rec);
      });
      sub.once("error", reject);
      sub.once("timeout", reject);
    }),
    WAIT_MS,
    `subscribe to ${channel}`,
  );
}

// Closes (close=true) or unsubscribes a subscription; resolves once the server
// answered.
export function endSubscription(sub, close) {
  return within(
    new Promise((resolve, reject) => {
      sub.once(close ? "closed" : "unsubscribed", resolve);
      sub.once("error", reject);
      sub.once("timeout", reject);
      if (close) sub.close();
      else sub.unsubscribe();
    }),
    WAIT_MS,
    close ? "subscription close" : "unsubscribe",
  );
}

// Returns once everything this client wrote before now has reached the server
// and everything the server had sent to this client's NATS connection before
// that has been handed to the subscriptions (a PING/PONG round trip; nats 1.x
// dispatches messages as it parses them).
export function barrier(sc) {
  return within(new Promise((resolve) => sc.nc.flush(() => resolve())), WAIT_MS, "flush");
}

export function describe(msgs) {
  return msgs.map((m) => [m.getSequence(), m.getData(), m.isRedelivered() ? "redelivered" : "new"]);
}

export function summary(msgs) {
  return msgs.map((m) => [m.getSequence(), m.getData(), m.isRedelivered()]);
}

// Drops a client's NATS connection without a streaming close, as a crashed
// process would (after making sure what it already wrote reached the server).
export async function dropConnection(sc) {
  await barrier(sc);
  clearTimeout(sc.pingTimer);
  delete sc.pingTimer;
  sc.nc.close();
}
