// Publish with a wait for each PubAck, and many publishes in flight.

import assert from "node:assert/strict";
import { test } from "node:test";
import { describe, publish, subscribe, withServer, within } from "./helpers.mjs";

test("sync publish: each acked, then delivered in order", () =>
  withServer([], async ({ connect }) => {
    const sc = await connect("sync-pub");
    const n = 20;
    const guids = [];
    for (let i = 0; i < n; i++) guids.push(await publish(sc, "sync.chan", `m${i}`));
    assert.equal(new Set(guids).size, n);
    assert.ok(guids.every((g) => typeof g === "string" && g.length > 0));

    const opts = sc.subscriptionOptions().setDeliverAllAvailable();
    const rec = await subscribe(sc, "sync.chan", { opts });
    const msgs = await rec.count(n);
    assert.deepEqual(
      msgs.map((m) => [m.getSequence(), m.getData()]),
      Array.from({ length: n }, (_, i) => [i + 1, `m${i}`]),
    );
    const stamps = msgs.map((m) => m.getTimestampRaw());
    assert.deepEqual(stamps, [...stamps].sort((a, b) => a - b), "timestamps went backwards");
  }));

test("async publish: many in flight, every ack arrives with the matching guid", () =>
  withServer([], async ({ connect }) => {
    const sc = await connect("async-pub");
    const subClient = await connect("async-sub");
    const rec = await subscribe(subClient, "async.chan");

    const n = 1000;
    const sent = [];
    const acks = new Map(); // publish index -> { err, guid }
    const twice = [];
    let resolveAll;
    const allAcked = new Promise((r) => (resolveAll = r));
    for (let i = 0; i < n; i++) {
      sent.push(
        sc.publish("async.chan", `a${i}`, (err, guid) => {
          if (acks.has(i)) twice.push(i);
          acks.set(i, { err, guid });
          if (acks.size === n) resolveAll();
        }),
      );
    }
    // Nothing can have been acknowledged yet: the writes are still buffered.
    assert.equal(sc.pubAckOutstanding, n);
    await within(allAcked, undefined, `${n} PubAcks`);
    assert.deepEqual(twice, [], "acked more than once");
    const errors = [...acks.values()].filter((a) => a.err);
    assert.deepEqual(errors, []);
    for (let i = 0; i < n; i++) {
      assert.equal(acks.get(i).guid, sent[i], `PubAck for publish ${i} carries another guid`);
    }
    assert.equal(new Set(sent).size, n);

    const msgs = await rec.count(n);
    assert.deepEqual(
      msgs.map((m) => m.getData()),
      Array.from({ length: n }, (_, i) => `a${i}`),
      JSON.stringify(describe(msgs.slice(0, 5))),
    );
    assert.deepEqual(
      msgs.map((m) => m.getSequence()),
      Array.from({ length: n }, (_, i) => i + 1),
    );
  }));
