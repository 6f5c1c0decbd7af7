// Connect, and the duplicate client ID check (PROTOCOL §3.1).

import assert from "node:assert/strict";
import { test } from "node:test";
import {
  dropConnection,
  publishAll,
  stanClose,
  stanConnect,
  subscribe,
  summary,
  withServer,
} from "./helpers.mjs";

test("connect, publish, subscribe, close; the ID is free again after close", () =>
  withServer([], async ({ connect }) => {
    const sc = await connect("basic-client");
    const rec = await subscribe(sc, "greetings");
    await publishAll(sc, "greetings", ["hello"]);
    const [m] = await rec.count(1);
    assert.deepEqual(summary([m]), [[1, "hello", false]]);
    assert.equal(m.getSubject(), "greetings");
    assert.ok(m.getTimestampRaw() > 0);
    await stanClose(sc);

    const again = await connect("basic-client");
    await stanClose(again);
  }));

test("duplicate client ID is refused while the first is alive, accepted once it is gone", () =>
  withServer([], async ({ server, connect }) => {
    const first = await connect("dup-client");
    // A durable owned by the first client: when the server drops that client
    // it must close it as a connection close does (it goes offline, resumable).
    const heldOpts = first.subscriptionOptions().setDurableName("keep").setDeliverAllAvailable();
    const held = await subscribe(first, "dup.chan", { opts: heldOpts });
    await publishAll(first, "dup.chan", ["one"]);
    await held.count(1);

    // The first client answers the server's heartbeat probe: refused.
    await assert.rejects(stanConnect(server, "dup-client"), {
      message: "stan: clientID already registered",
    });

    // The first client is still registered and working.
    await publishAll(first, "dup.chan", ["two"]);
    await held.count(2);

    // Its NATS connection goes away without a streaming close.
    await dropConnection(first);

    // The probe now gets no answer: the new client takes the ID over.
    const second = await connect("dup-client");
    await publishAll(second, "dup.chan", ["three"]);

    // The old client's durable was closed, not left active: the new holder of
    // the ID resumes it (start position ignored) and gets only what it missed.
    const opts = second.subscriptionOptions().setDurableName("keep").setDeliverAllAvailable();
    const resumed = await subscribe(second, "dup.chan", { opts });
    await resumed.until((l) => l.some((m) => m.getData() === "three"), "the missed message");
    assert.deepEqual(summary(resumed.msgs), [[3, "three", false]]);
  }));

test("repeated duplicate connects are refused and leave the first client working", () =>
  withServer([], async ({ server, connect }) => {
    const first = await connect("dup-twice");
    for (let i = 0; i < 2; i++) {
      await assert.rejects(stanConnect(server, "dup-twice"), {
        message: "stan: clientID already registered",
      });
    }
    const rec = await subscribe(first, "still.alive");
    await publishAll(first, "still.alive", ["x"]);
    await rec.count(1);
  }));

for (const clientId of ["bad id", "dots.not.allowed", "star*"]) {
  test(`invalid client ID ${JSON.stringify(clientId)}`, () =>
    withServer([], async ({ server }) => {
      await assert.rejects(stanConnect(server, clientId), {
        message: "stan: invalid clientID: only alphanumeric and `-` or `_` characters allowed",
      });
    }));
}
