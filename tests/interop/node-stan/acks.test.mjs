// Manual acks: redelivery after the ack wait, and MaxInFlight
// (PROTOCOL §3.4 to §3.7).

import assert from "node:assert/strict";
import { test } from "node:test";
import { barrier, describe, publishAll, subscribe, summary, withServer } from "./helpers.mjs";

const CHAN = "acks.chan";

test("an unacked message is redelivered, flagged, until it is acked", () =>
  withServer([], async ({ connect }) => {
    const sc = await connect("ack-client");
    const opts = sc.subscriptionOptions().setManualAckMode(true).setAckWait(1000);
    const rec = await subscribe(sc, CHAN, { opts });
    await publishAll(sc, CHAN, ["m1"]);

    const [first] = await rec.count(1);
    assert.deepEqual(summary([first]), [[1, "m1", false]]);
    assert.equal(first.getRedeliveryCount(), 0);

    // Not acked: it comes again after the ack wait, flagged as redelivered.
    await rec.count(2);
    const again = rec.msgs[1];
    assert.deepEqual(summary([again]), [[1, "m1", true]], JSON.stringify(describe(rec.msgs)));
    assert.equal(again.getRedeliveryCount(), 1);
    again.ack();

    // A second message, also left unacknowledged, is redelivered one ack wait
    // later. Had m1 still been pending, its earlier expiration would have
    // brought it back before m2's redelivery.
    await publishAll(sc, CHAN, ["m2"]);
    await rec.seq(2);
    const m2Index = rec.msgs.findIndex((m) => m.getSequence() === 2);
    await rec.until(
      (l) => l.some((m) => m.getSequence() === 2 && m.isRedelivered()),
      "the redelivery of m2",
    );
    rec.msgs[rec.msgs.length - 1].ack();
    await barrier(sc);
    const lateM1 = rec.msgs.slice(m2Index).filter((m) => m.getSequence() === 1);
    assert.deepEqual(lateM1, [], `m1 was redelivered after it was acked: ${JSON.stringify(describe(rec.msgs))}`);
    const m2s = rec.msgs.filter((m) => m.getSequence() === 2);
    assert.ok(
      !m2s[0].isRedelivered() && m2s.slice(1).every((m) => m.isRedelivered()),
      JSON.stringify(describe(rec.msgs)),
    );
  }));

test("MaxInFlight 2 holds further messages until an ack", () =>
  withServer([], async ({ connect }) => {
    const sc = await connect("mif-client");
    const acked = new Set();
    const violations = [];
    // Called for each arrival: what this client has not acked yet can only be
    // more than the server counts as pending, never less.
    const onMessage = (m, rec) => {
      const outstanding = rec.msgs.slice(0, -1).map((x) => x.getSequence()).filter((s) => !acked.has(s));
      if (outstanding.length >= 2) violations.push([m.getSequence(), outstanding]);
    };
    const opts = sc.subscriptionOptions().setManualAckMode(true).setMaxInFlight(2);
    const rec = await subscribe(sc, CHAN, { opts, onMessage });
    const ack = (seq) => {
      acked.add(seq);
      rec.msgs.find((m) => m.getSequence() === seq).ack();
    };

    // The subscriber and the publisher share a connection: the server sends
    // the deliveries a publish causes before its PubAck, so once the last
    // PubAck is in, everything that could be delivered has arrived.
    await publishAll(sc, CHAN, ["m1", "m2", "m3", "m4", "m5"]);
    await barrier(sc);
    assert.deepEqual(rec.seqs(), [1, 2], JSON.stringify(describe(rec.msgs)));

    ack(1);
    await rec.seq(3);
    await publishAll(sc, CHAN, ["m6"]);
    await barrier(sc);
    assert.deepEqual(rec.seqs(), [1, 2, 3], JSON.stringify(describe(rec.msgs)));

    ack(2);
    ack(3);
    await rec.seq(5);
    await publishAll(sc, CHAN, ["m7"]);
    await barrier(sc);
    assert.deepEqual(rec.seqs(), [1, 2, 3, 4, 5], JSON.stringify(describe(rec.msgs)));

    ack(4);
    ack(5);
    await rec.seq(7);
    ack(6);
    ack(7);
    assert.deepEqual(rec.seqs(), [1, 2, 3, 4, 5, 6, 7]);
    assert.deepEqual(violations, [], "arrivals while 2 were unacknowledged");
    assert.ok(rec.msgs.every((m) => !m.isRedelivered()));
  }));
