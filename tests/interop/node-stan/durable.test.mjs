// Durable subscriptions: resume after a connection close or a subscription
// close; unsubscribe forgets the durable (PROTOCOL §3.3.1, §3.8; BEHAVIOUR §5).

import assert from "node:assert/strict";
import { test } from "node:test";
import { endSubscription, publishAll, stanClose, subscribe, summary, withServer } from "./helpers.mjs";

const CHAN = "durable.chan";

test("durable resumes after the client closed: missed messages, unacked ones redelivered", () =>
  withServer([], async ({ connect }) => {
    const pub = await connect("durable-publisher");
    await publishAll(pub, CHAN, ["m1", "m2", "m3"]);

    const sc = await connect("durable-client");
    const opts = () =>
      sc.subscriptionOptions().setDurableName("dur").setDeliverAllAvailable().setManualAckMode(true);
    const first = await subscribe(sc, CHAN, { opts: opts() });
    await first.count(3);
    assert.deepEqual(summary(first.msgs), [
      [1, "m1", false],
      [2, "m2", false],
      [3, "m3", false],
    ]);
    // Ack the first two; m3 stays unacknowledged. The close is applied after
    // the acks sent before it.
    first.msgs[0].ack();
    first.msgs[1].ack();
    await stanClose(sc);

    await publishAll(pub, CHAN, ["m4", "m5"]);

    const again = await connect("durable-client");
    // The start position of a resumed durable is ignored.
    const resumedOpts = again
      .subscriptionOptions()
      .setDurableName("dur")
      .setDeliverAllAvailable()
      .setManualAckMode(true);
    const resumed = await subscribe(again, CHAN, { opts: resumedOpts });
    await resumed.seq(5);
    await publishAll(pub, CHAN, ["m6"]);
    await resumed.seq(6);
    assert.deepEqual(summary(resumed.msgs), [
      [3, "m3", true],
      [4, "m4", false],
      [5, "m5", false],
      [6, "m6", false],
    ]);
  }));

test("durable resumes after a subscription close on the same connection", () =>
  withServer([], async ({ connect }) => {
    const sc = await connect("durable-client");
    const rec = await subscribe(sc, CHAN, { opts: sc.subscriptionOptions().setDurableName("dur") });
    await publishAll(sc, CHAN, ["m1", "m2"]);
    await rec.count(2);
    await endSubscription(rec.sub, true);

    await publishAll(sc, CHAN, ["m3", "m4"]);

    const resumed = await subscribe(sc, CHAN, { opts: sc.subscriptionOptions().setDurableName("dur") });
    await resumed.seq(4);
    await publishAll(sc, CHAN, ["m5"]);
    await resumed.seq(5);
    assert.deepEqual(summary(rec.msgs), [
      [1, "m1", false],
      [2, "m2", false],
    ]);
    assert.deepEqual(summary(resumed.msgs), [
      [3, "m3", false],
      [4, "m4", false],
      [5, "m5", false],
    ]);
  }));

test("an active durable cannot be registered twice", () =>
  withServer([], async ({ connect }) => {
    const sc = await connect("durable-client");
    await subscribe(sc, CHAN, { opts: sc.subscriptionOptions().setDurableName("dur") });
    await assert.rejects(subscribe(sc, CHAN, { opts: sc.subscriptionOptions().setDurableName("dur") }), {
      message: "stan: duplicate durable registration",
    });
  }));

test("close keeps the durable, unsubscribe forgets it", () =>
  withServer([], async ({ connect }) => {
    const sc = await connect("durable-client");
    await publishAll(sc, CHAN, ["m1", "m2", "m3"]);
    const opts = () => sc.subscriptionOptions().setDurableName("dur").setDeliverAllAvailable();

    const rec = await subscribe(sc, CHAN, { opts: opts() });
    await rec.seq(3);
    await endSubscription(rec.sub, true);
    await publishAll(sc, CHAN, ["m4"]);

    // Closed: resuming continues after the last delivered message.
    const rec2 = await subscribe(sc, CHAN, { opts: opts() });
    await rec2.seq(4);
    await publishAll(sc, CHAN, ["m5"]);
    await rec2.seq(5);
    assert.deepEqual(summary(rec2.msgs), [
      [4, "m4", false],
      [5, "m5", false],
    ]);

    // Unsubscribed: the durable is gone; a subscription with the same name is
    // new and its start position applies (all available, from m1).
    await endSubscription(rec2.sub, false);
    await publishAll(sc, CHAN, ["m6"]);
    const rec3 = await subscribe(sc, CHAN, { opts: opts() });
    await rec3.seq(6);
    assert.deepEqual(
      summary(rec3.msgs),
      Array.from({ length: 6 }, (_, i) => [i + 1, `m${i + 1}`, false]),
    );
  }));

test("an unsubscribed durable resubscribed with new-only gets nothing old", () =>
  withServer([], async ({ connect }) => {
    const sc = await connect("durable-client");
    const opts = () => sc.subscriptionOptions().setDurableName("dur");
    const rec = await subscribe(sc, CHAN, { opts: opts() });
    await publishAll(sc, CHAN, ["m1"]);
    await rec.seq(1);
    await endSubscription(rec.sub, false);
    await publishAll(sc, CHAN, ["m2", "m3"]);

    const rec2 = await subscribe(sc, CHAN, { opts: opts() });
    await publishAll(sc, CHAN, ["m4"]);
    await rec2.seq(4);
    assert.deepEqual(summary(rec2.msgs), [[4, "m4", false]]);
  }));
