// Every start position of a new subscription (PROTOCOL §3.3.2).
//
// Each test ends with a marker message published after the subscription
// started: messages of one subscription arrive in sequence order, so once the
// marker is in, the exact list received so far is final.

import assert from "node:assert/strict";
import { test } from "node:test";
import { publishAll, sleep, StartPosition, subscribe, withServer } from "./helpers.mjs";

const CHAN = "start.chan";

async function setupChannel(connect, n = 5) {
  const sc = await connect("start-client");
  await publishAll(
    sc,
    CHAN,
    Array.from({ length: n }, (_, i) => `m${i + 1}`),
  );
  return sc;
}

async function subscribeThenMarker(sc, markerSeq, configure) {
  const opts = sc.subscriptionOptions();
  if (configure) configure(opts);
  const rec = await subscribe(sc, CHAN, { opts });
  await publishAll(sc, CHAN, ["marker"]);
  await rec.seq(markerSeq);
  return rec.msgs.map((m) => [m.getSequence(), m.getData()]);
}

test("new only", () =>
  withServer([], async ({ connect }) => {
    const sc = await setupChannel(connect);
    const got = await subscribeThenMarker(sc, 6, (o) => o.setStartAt(StartPosition.NEW_ONLY));
    assert.deepEqual(got, [[6, "marker"]]);
  }));

test("default start position is new only", () =>
  withServer([], async ({ connect }) => {
    const sc = await setupChannel(connect);
    const got = await subscribeThenMarker(sc, 6);
    assert.deepEqual(got, [[6, "marker"]]);
  }));

test("last received", () =>
  withServer([], async ({ connect }) => {
    const sc = await setupChannel(connect);
    const got = await subscribeThenMarker(sc, 6, (o) => o.setStartWithLastReceived());
    assert.deepEqual(got, [
      [5, "m5"],
      [6, "marker"],
    ]);
  }));

test("last received on an empty channel", () =>
  withServer([], async ({ connect }) => {
    const sc = await connect("start-client");
    const got = await subscribeThenMarker(sc, 1, (o) => o.setStartWithLastReceived());
    assert.deepEqual(got, [[1, "marker"]]);
  }));

test("sequence", () =>
  withServer([], async ({ connect }) => {
    const sc = await setupChannel(connect);
    const got = await subscribeThenMarker(sc, 6, (o) => o.setStartAtSequence(3));
    assert.deepEqual(got, [
      [3, "m3"],
      [4, "m4"],
      [5, "m5"],
      [6, "marker"],
    ]);
  }));

test("sequence beyond the last starts after the last", () =>
  withServer([], async ({ connect }) => {
    const sc = await setupChannel(connect);
    const got = await subscribeThenMarker(sc, 6, (o) => o.setStartAtSequence(100));
    assert.deepEqual(got, [[6, "marker"]]);
  }));

test("first, and deliver all available", () =>
  withServer([], async ({ connect }) => {
    const sc = await setupChannel(connect);
    const expected = Array.from({ length: 5 }, (_, i) => [i + 1, `m${i + 1}`]);
    let got = await subscribeThenMarker(sc, 6, (o) => o.setStartAt(StartPosition.FIRST));
    assert.deepEqual(got, [...expected, [6, "marker"]]);
    got = await subscribeThenMarker(sc, 7, (o) => o.setDeliverAllAvailable());
    assert.deepEqual(got, [...expected, [6, "marker"], [7, "marker"]]);
  }));

test("time delta", () =>
  withServer([], async ({ connect }) => {
    const sc = await connect("start-client");
    await publishAll(sc, CHAN, ["old1", "old2", "old3"]);
    await sleep(3000);
    const laterStart = Date.now();
    await publishAll(sc, CHAN, ["new4", "new5"]);
    // The window opens 1 s before the later publishes began: well after the
    // earlier ones, and with room for the time the request takes to arrive.
    const got = await subscribeThenMarker(sc, 6, (o) =>
      o.setStartAtTimeDelta(Date.now() - laterStart + 1000),
    );
    assert.deepEqual(got, [
      [4, "new4"],
      [5, "new5"],
      [6, "marker"],
    ]);
  }));
