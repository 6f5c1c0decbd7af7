// The monitoring endpoints read while node-nats-streaming clients publish,
// subscribe, hold unacknowledged messages and leave (OPERATIONS §4).

import assert from "node:assert/strict";
import net from "node:net";
import { test } from "node:test";
import {
  barrier,
  endSubscription,
  publishAll,
  stanClose,
  subscribe,
  withServer,
} from "./helpers.mjs";

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

async function get(port, path) {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  const text = await res.text();
  return { status: res.status, type: res.headers.get("content-type"), cors: res.headers.get("access-control-allow-origin"), text };
}

async function json(port, path) {
  const r = await get(port, path);
  assert.equal(r.status, 200, `${path}: ${r.text}`);
  assert.match(r.type, /^application\/json/);
  assert.equal(r.cors, "*");
  return JSON.parse(r.text);
}

test("endpoints follow live streaming clients", async () => {
  const http = await freePort();
  await withServer(["-m", String(http), "-cid", "mon-cluster", "-mm", "40"], async ({ connect }) => {
    const pub = await connect("mon-pub");
    const reader = await connect("mon-reader");
    const holder = await connect("mon-holder");

    const plain = await subscribe(reader, "orders");
    const durOpts = reader.subscriptionOptions();
    durOpts.setDurableName("audit");
    durOpts.setDeliverAllAvailable();
    const durable = await subscribe(reader, "orders", { opts: durOpts });
    const groupOpts = reader.subscriptionOptions();
    groupOpts.setDurableName("d");
    const group = await subscribe(reader, "billing", { queue: "workers", opts: groupOpts });
    const heldOpts = holder.subscriptionOptions();
    heldOpts.setManualAckMode(true);
    heldOpts.setMaxInFlight(4);
    heldOpts.setAckWait(60_000);
    const held = await subscribe(holder, "orders", { opts: heldOpts });

    await publishAll(pub, "orders", Array.from({ length: 10 }, (_, i) => `o${i}`));
    await publishAll(pub, "billing", ["b0", "b1", "b2"]);
    await plain.count(10);
    await durable.count(10);
    await group.count(3);
    await held.count(4);
    await barrier(holder);

    const serverz = await json(http, "/streaming/serverz");
    assert.deepEqual(Object.keys(serverz).slice(0, 8), [
      "cluster_id", "server_id", "version", "go", "state", "now", "start_time", "uptime",
    ]);
    assert.equal(serverz.cluster_id, "mon-cluster");
    assert.equal(serverz.state, "STANDALONE");
    assert.equal(serverz.clients, 3);
    assert.equal(serverz.channels, 2);
    assert.equal(serverz.subscriptions, 4);
    assert.equal(serverz.total_msgs, 13);
    assert.equal(serverz.in_msgs, 13);
    assert.equal(serverz.out_msgs, 10 + 10 + 3 + 4);

    const storez = await json(http, "/streaming/storez");
    assert.equal(storez.type, "MEMORY");
    assert.equal(storez.limits.max_msgs, 40);
    assert.equal(storez.total_msgs, 13);

    const clientsz = await json(http, "/streaming/clientsz?subs=1");
    assert.equal(clientsz.total, 3);
    assert.deepEqual(clientsz.clients.map((c) => c.id), ["mon-holder", "mon-pub", "mon-reader"]);
    const readerz = clientsz.clients[2];
    assert.equal(readerz.subs_count, 3);
    assert.deepEqual(Object.keys(readerz.subscriptions).sort(), ["billing", "orders"]);
    const one = await json(http, "/streaming/clientsz?client=mon-holder&subs=1");
    assert.equal(one.id, "mon-holder");
    assert.equal(one.subscriptions.orders[0].pending_count, 4);
    assert.equal(one.subscriptions.orders[0].is_stalled, true);
    const missing = await get(http, "/streaming/clientsz?client=nobody");
    assert.equal(missing.status, 404);
    assert.match(missing.text, /Client nobody not found/);

    const names = await json(http, "/streaming/channelsz");
    assert.deepEqual(names.names, ["billing", "orders"]);
    const page = await json(http, "/streaming/channelsz?subs=1&offset=1&limit=1");
    assert.equal(page.count, 1);
    assert.equal(page.total, 2);
    assert.equal(page.channels[0].name, "orders");
    const orders = await json(http, "/streaming/channelsz?channel=orders&subs=1");
    assert.equal(orders.msgs, 10);
    assert.equal(orders.first_seq, 1);
    assert.equal(orders.last_seq, 10);
    assert.equal(orders.subs_count, 3);
    const dur = orders.subscriptions.find((s) => s.durable_name === "audit");
    assert.equal(dur.is_durable, true);
    assert.equal(dur.last_sent, 10);
    const billing = await json(http, "/streaming/channelsz?channel=billing&subs=1");
    assert.equal(billing.subscriptions[0].queue_name, "d:workers");

    const ft = await get(http, "/streaming/isFTActive");
    assert.equal(ft.status, 204);

    const connz = await json(http, "/connz?subs=1");
    assert.ok(connz.num_connections >= 3, JSON.stringify(connz));
    const varz = await json(http, "/varz");
    assert.ok(varz.in_msgs >= 13);
    const subsz = await json(http, "/subsz");
    assert.ok(subsz.num_subscriptions > 0);
    const routez = await json(http, "/routez");
    assert.equal(routez.num_routes, 0);

    // Leaving shows at once: the durable goes offline, the holder's pending
    // messages go with it.
    await endSubscription(durable.sub, true);
    await stanClose(holder);
    const after = await json(http, "/streaming/channelsz?channel=orders&subs=1");
    assert.equal(after.subs_count, 2);
    const offline = after.subscriptions.find((s) => s.durable_name === "audit");
    assert.equal(offline.is_offline, true);
    const afterClients = await json(http, "/streaming/clientsz");
    assert.equal(afterClients.total, 2);
    const serverzAfter = await json(http, "/streaming/serverz");
    assert.equal(serverzAfter.clients, 2);
  });
});
