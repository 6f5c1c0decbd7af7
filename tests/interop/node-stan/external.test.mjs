// The streaming server without an embedded NATS server (-ns): the official client
// talks to Debian's nats-server, which the streaming server reaches as a client
// (OPERATIONS §5). Acks sent before a close are applied before it, across the
// streaming server's connections.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { test } from "node:test";
import {
  freePort,
  publishAll,
  sleep,
  stanClose,
  stanConnect,
  subscribe,
  summary,
  tryConnect,
} from "./helpers.mjs";

const NATS_SERVER = process.env.NATS_SERVER_BIN || "/usr/sbin/nats-server";
const START_TIMEOUT_MS = 30_000;

function run(bin, argv) {
  const child = spawn(bin, argv, { stdio: ["ignore", "pipe", "pipe"] });
  const chunks = [];
  child.stdout.on("data", (d) => chunks.push(d));
  child.stderr.on("data", (d) => chunks.push(d));
  const exited = new Promise((resolve) => {
    child.once("exit", resolve);
    child.once("error", resolve);
  });
  return {
    output: () => Buffer.concat(chunks).toString("utf8"),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
  };
}

async function withExternal(body) {
  const port = await freePort();
  const nats = run(NATS_SERVER, ["-a", "127.0.0.1", "-p", String(port)]);
  const server = { url: `nats://127.0.0.1:${port}`, cluster: "test-cluster" };
  const conns = [];
  let stan = null;
  try {
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (!(await tryConnect(port))) {
      if (Date.now() > deadline) throw new Error(`nats-server did not start:\n${nats.output()}`);
      await sleep(20);
    }
    // The streaming server's first connection must succeed: it starts after NATS.
    stan = run(process.env.STAN_SERVER_BIN, ["-ns", server.url]);
    for (;;) {
      try {
        await stanClose(await stanConnect(server, "readiness-probe", { connectTimeout: 1000 }));
        break;
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`no streaming server (${err}):\n${stan.output()}`);
        await sleep(50);
      }
    }
    await body({
      async connect(clientId) {
        const sc = await stanConnect(server, clientId);
        conns.push(sc);
        return sc;
      },
    });
  } catch (err) {
    err.message += `\n--- stan-server output ---\n${stan?.output()}`;
    throw err;
  } finally {
    for (const sc of conns) sc.close();
    await stan?.stop();
    await nats.stop();
  }
}

test("publish, subscribe and a durable resumed over an external NATS server", () =>
  withExternal(async ({ connect }) => {
    const pub = await connect("ext-publisher");
    await publishAll(pub, "ext.chan", ["m1", "m2", "m3"]);

    const sc = await connect("ext-client");
    const opts = () =>
      sc.subscriptionOptions().setDurableName("dur").setDeliverAllAvailable().setManualAckMode(true);
    const first = await subscribe(sc, "ext.chan", { opts: opts() });
    await first.count(3);
    first.msgs[0].ack();
    first.msgs[1].ack();
    await stanClose(sc);

    await publishAll(pub, "ext.chan", ["m4"]);
    const again = await connect("ext-client");
    const resumed = await subscribe(again, "ext.chan", {
      opts: again.subscriptionOptions().setDurableName("dur").setManualAckMode(true),
    });
    await resumed.seq(4);
    assert.deepEqual(summary(resumed.msgs), [
      [3, "m3", true],
      [4, "m4", false],
    ]);
  }));
