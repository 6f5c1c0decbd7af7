// Store limits and invalid channel names (BEHAVIOUR §2.1, §4; PROTOCOL §5).

import assert from "node:assert/strict";
import { test } from "node:test";
import { endSubscription, publish, publishAll, subscribe, summary, withServer } from "./helpers.mjs";

test("max channels: a publish or subscribe creating one more channel fails", () =>
  withServer(["-mc", "1"], async ({ connect }) => {
    const sc = await connect("limits-client");
    await publishAll(sc, "first.chan", ["a"]);
    await assert.rejects(publish(sc, "second.chan", "b"), { message: "too many channels" });
    await assert.rejects(subscribe(sc, "third.chan"), { message: "too many channels" });

    // The existing channel still works.
    await publishAll(sc, "first.chan", ["c"]);
    const rec = await subscribe(sc, "first.chan", { opts: sc.subscriptionOptions().setDeliverAllAvailable() });
    await rec.count(2);
    assert.deepEqual(
      rec.msgs.map((m) => m.getData()),
      ["a", "c"],
    );
  }));

test("max subscriptions per channel", () =>
  withServer(["-msu", "1"], async ({ connect }) => {
    const sc = await connect("limits-client");
    const other = await connect("limits-other");
    const first = await subscribe(sc, "subs.chan");
    for (const client of [sc, other]) {
      await assert.rejects(subscribe(client, "subs.chan"), {
        message: "too many subscriptions per channel",
      });
    }
    await assert.rejects(subscribe(other, "subs.chan", { opts: other.subscriptionOptions().setDurableName("dur") }), {
      message: "too many subscriptions per channel",
    });

    // Another channel has its own count; the first subscription still works.
    await subscribe(other, "subs.other");
    await publishAll(sc, "subs.chan", ["x"]);
    await first.count(1);
  }));

test("max msgs: the oldest messages are dropped", () =>
  withServer(["-mm", "3"], async ({ connect }) => {
    const sc = await connect("limits-client");
    // Every publish succeeds: there is no "reject new messages" policy.
    await publishAll(sc, "msgs.chan", ["m1", "m2", "m3", "m4", "m5"]);
    const rec = await subscribe(sc, "msgs.chan", { opts: sc.subscriptionOptions().setDeliverAllAvailable() });
    await rec.count(3);
    await publishAll(sc, "msgs.chan", ["m6"]);
    await rec.seq(6);
    assert.deepEqual(summary(rec.msgs), [
      [3, "m3", false],
      [4, "m4", false],
      [5, "m5", false],
      [6, "m6", false],
    ]);
  }));

// Names that are valid NATS subjects (so the publish reaches the server) but
// not valid channel names.
for (const channel of ["foo.*", "foo.>", "*", "foo/bar"]) {
  test(`publish to invalid channel name ${JSON.stringify(channel)}`, () =>
    withServer([], async ({ connect }) => {
      const sc = await connect("limits-client");
      await assert.rejects(publish(sc, channel, "x"), { message: "stan: invalid publish request" });
    }));
}

test("subscribe to invalid channel names", () =>
  withServer([], async ({ connect }) => {
    const sc = await connect("limits-client");
    for (const channel of ["foo.*", "foo.>", "foo..bar", ".foo", "foo.", "foo/bar"]) {
      await assert.rejects(subscribe(sc, channel), { message: "stan: invalid subject" }, channel);
    }
  }));

test("invalid subscription requests", () =>
  withServer([], async ({ connect }) => {
    const sc = await connect("limits-client");
    const cases = [
      [sc.subscriptionOptions().setAckWait(0), undefined, "stan: invalid ack wait time, should be >= 1s"],
      [sc.subscriptionOptions().setMaxInFlight(0), undefined, "stan: invalid MaxInflight, should be >= 1"],
      [
        sc.subscriptionOptions().setDurableName("a:b"),
        "workers",
        "stan: durable name of a durable queue subscriber can't contain the character ':'",
      ],
    ];
    for (const [opts, queue, message] of cases) {
      await assert.rejects(subscribe(sc, "valid.chan", { opts, queue }), { message });
    }
  }));

test("an offline durable cannot be unsubscribed through its old inbox", () =>
  withServer([], async ({ connect }) => {
    const sc = await connect("limits-client");
    const rec = await subscribe(sc, "valid.chan", { opts: sc.subscriptionOptions().setDurableName("dur") });
    await endSubscription(rec.sub, true);
    // The client refuses a second call on the same object; send the request
    // with a fresh object carrying the old inbox.
    const stale = Object.create(Object.getPrototypeOf(rec.sub));
    Object.assign(stale, { stanConnection: sc, subject: rec.sub.subject, inbox: rec.sub.inbox, ackInbox: rec.sub.ackInbox });
    await assert.rejects(endSubscription(stale, false), { message: "stan: invalid subscription" });
  }));
