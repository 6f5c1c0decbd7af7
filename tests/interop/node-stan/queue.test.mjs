// Queue groups: each message goes to exactly one member; a durable group
// survives all its members leaving by close (PROTOCOL §3.4, §3.8).

import assert from "node:assert/strict";
import { test } from "node:test";
import {
  barrier,
  describe,
  endSubscription,
  publishAll,
  sleep,
  stanClose,
  subscribe,
  summary,
  withServer,
  within,
} from "./helpers.mjs";

const CHAN = "queue.chan";

async function join(connect, clientId, configure) {
  const sc = await connect(clientId);
  const opts = sc.subscriptionOptions();
  if (configure) configure(opts);
  const rec = await subscribe(sc, CHAN, { queue: "workers", opts });
  return { sc, rec };
}

const groupSeqs = (members) => members.flatMap((m) => m.rec.seqs());

// Waits until the members between them have received sequences 1..n.
function waitGroup(members, n) {
  return within(
    (async () => {
      while (new Set(groupSeqs(members)).size < n) await sleep(10);
    })(),
    undefined,
    `sequences 1..${n} across the group`,
  );
}

test("each message goes to exactly one member of a group of 3", () =>
  withServer([], async ({ connect }) => {
    const members = [];
    for (let i = 0; i < 3; i++) members.push(await join(connect, `member-${i}`));
    const pub = await connect("queue-publisher");
    const n = 60;
    await publishAll(
      pub,
      CHAN,
      Array.from({ length: n }, (_, i) => `w${i + 1}`),
    );
    await waitGroup(members, n);
    // Deliveries for a message are sent before its PubAck; a round trip on
    // each member's connection brings in anything still on its way.
    for (const m of members) await barrier(m.sc);

    const seqs = groupSeqs(members);
    const counts = new Map();
    for (const s of seqs) counts.set(s, (counts.get(s) ?? 0) + 1);
    assert.deepEqual(
      [...counts].filter(([, c]) => c > 1).map(([s]) => s),
      [],
      "delivered to more than one member",
    );
    assert.deepEqual(
      [...seqs].sort((a, b) => a - b),
      Array.from({ length: n }, (_, i) => i + 1),
    );
    for (const m of members) {
      assert.ok(m.rec.msgs.every((x) => !x.isRedelivered()), JSON.stringify(describe(m.rec.msgs)));
      const own = m.rec.seqs();
      assert.deepEqual(own, [...own].sort((a, b) => a - b), "a member's share out of order");
    }
    const spread = members.map((m) => m.rec.msgs.length);
    assert.ok(spread.every((c) => c > 0), `a member got nothing: ${spread}`);
  }));

test("a durable queue group survives all its members leaving by close", () =>
  withServer([], async ({ connect }) => {
    const durable = (o) => o.setDurableName("dq").setDeliverAllAvailable();
    const a = await join(connect, "dq-a", durable);
    const b = await join(connect, "dq-b", durable);
    const pub = await connect("queue-publisher");
    await publishAll(pub, CHAN, ["m1", "m2", "m3", "m4", "m5", "m6"]);
    await waitGroup([a, b], 6);
    await barrier(a.sc);
    await barrier(b.sc);
    assert.deepEqual(
      groupSeqs([a, b]).sort((x, y) => x - y),
      [1, 2, 3, 4, 5, 6],
    );

    // One member leaves by closing its connection, the last one by closing
    // its subscription: the group is kept.
    await stanClose(a.sc);
    await endSubscription(b.rec.sub, true);
    await publishAll(pub, CHAN, ["m7", "m8", "m9"]);

    // A member from another client joins: the group resumes where it was (its
    // start position is ignored).
    const c = await join(connect, "dq-c", durable);
    await c.rec.seq(9);
    await publishAll(pub, CHAN, ["m10"]);
    await c.rec.seq(10);
    assert.deepEqual(summary(c.rec.msgs), [
      [7, "m7", false],
      [8, "m8", false],
      [9, "m9", false],
      [10, "m10", false],
    ]);
  }));

test("a non-durable queue group is gone once all members left", () =>
  withServer([], async ({ connect }) => {
    const all = (o) => o.setDeliverAllAvailable();
    const a = await join(connect, "q-a", all);
    const pub = await connect("queue-publisher");
    await publishAll(pub, CHAN, ["m1", "m2"]);
    await a.rec.seq(2);
    await endSubscription(a.rec.sub, true);
    await publishAll(pub, CHAN, ["m3"]);

    // A new group of the same name starts from its own start position.
    const b = await join(connect, "q-b", all);
    await b.rec.seq(3);
    assert.deepEqual(b.rec.seqs(), [1, 2, 3]);
  }));

test("unsubscribing the last durable queue member destroys the group", () =>
  withServer([], async ({ connect }) => {
    const durable = (o) => o.setDurableName("dq").setDeliverAllAvailable();
    const a = await join(connect, "dq-a", durable);
    const pub = await connect("queue-publisher");
    await publishAll(pub, CHAN, ["m1", "m2"]);
    await a.rec.seq(2);
    await endSubscription(a.rec.sub, false);
    await publishAll(pub, CHAN, ["m3"]);

    const b = await join(connect, "dq-b", durable);
    await b.rec.seq(3);
    assert.deepEqual(b.rec.seqs(), [1, 2, 3]);
  }));
