// Queue groups: each message goes to exactly one member of a group.

import assert from "node:assert/strict";
import { test } from "node:test";
import { collect, WAIT_MS, withServer, within } from "./helpers.mjs";

const enc = new TextEncoder();
const dec = new TextDecoder();

// Resolves once the members of a group have received n messages between them.
function groupReceived(members, n) {
  const total = () => members.reduce((acc, m) => acc + m.work.msgs.length, 0);
  return within(
    (async () => {
      while (total() < n) await new Promise((r) => setTimeout(r, 10));
    })(),
    WAIT_MS,
    `${n} messages across the group`,
  );
}

test("queue group of 3 gets each message once; a plain subscriber gets all", () =>
  withServer([], async ({ connect }) => {
    const n = 300;
    const pubNc = await connect();
    const members = [];
    for (let i = 0; i < 3; i++) {
      const nc = await connect();
      const work = collect(nc, "work.items", { queue: "workers" });
      // A plain subscription on the same connection, used as an end marker.
      const done = collect(nc, "work.done");
      await nc.flush();
      members.push({ work, done });
    }
    const watchNc = await connect();
    const watcher = collect(watchNc, "work.items");
    await watchNc.flush();

    for (let i = 0; i < n; i++) pubNc.publish("work.items", enc.encode(String(i)));
    pubNc.publish("work.done");
    await pubNc.flush();

    await groupReceived(members, n);
    // Each member's end marker was published after all the work items, so once
    // every member has it, every item routed to that member has arrived.
    for (const m of members) await m.done.count(1);
    const all = members.flatMap((m) => m.work.msgs.map((x) => Number(dec.decode(x.data))));
    const seen = new Map();
    for (const v of all) seen.set(v, (seen.get(v) ?? 0) + 1);
    const dupes = [...seen].filter(([, c]) => c > 1).map(([v]) => v);
    assert.deepEqual(dupes, [], "delivered more than once within the group");
    assert.equal(all.length, n);
    assert.deepEqual(
      [...all].sort((a, b) => a - b),
      Array.from({ length: n }, (_, i) => i),
    );

    const got = await watcher.count(n);
    assert.deepEqual(
      got.map((m) => Number(dec.decode(m.data))),
      Array.from({ length: n }, (_, i) => i),
    );
  }));

test("two queue groups on one subject each get every message once", () =>
  withServer([], async ({ connect }) => {
    const n = 100;
    const pubNc = await connect();
    const groups = { g1: [], g2: [] };
    for (const g of Object.keys(groups)) {
      for (let i = 0; i < 2; i++) {
        const nc = await connect();
        const work = collect(nc, "jobs", { queue: g });
        const done = collect(nc, "jobs.done");
        await nc.flush();
        groups[g].push({ work, done });
      }
    }
    for (let i = 0; i < n; i++) pubNc.publish("jobs", enc.encode(String(i)));
    pubNc.publish("jobs.done");

    for (const [g, members] of Object.entries(groups)) {
      await groupReceived(members, n);
      for (const m of members) await m.done.count(1);
      const all = members.flatMap((m) => m.work.msgs.map((x) => Number(dec.decode(x.data))));
      assert.deepEqual(
        all.sort((a, b) => a - b),
        Array.from({ length: n }, (_, i) => i),
        g,
      );
    }
  }));
