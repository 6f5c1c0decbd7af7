// Core NATS publish/subscribe, wildcards, unsubscribe, payload limit and ordering.

import assert from "node:assert/strict";
import { test } from "node:test";
import { ErrorCode } from "nats";
import { collect, withServer } from "./helpers.mjs";

const enc = new TextEncoder();
const dec = new TextDecoder();
const MAX_PAYLOAD = 1024 * 1024;

test("publish and subscribe between two connections", () =>
  withServer([], async ({ connect }) => {
    const subNc = await connect();
    const pubNc = await connect();
    const c = collect(subNc, "greet.hello");
    await subNc.flush();

    const payloads = ["one", "two", "", "three with spaces \r\n and a line break"];
    for (const p of payloads) pubNc.publish("greet.hello", enc.encode(p));
    await pubNc.flush();

    const got = await c.count(payloads.length);
    assert.deepEqual(got.map((m) => dec.decode(m.data)), payloads);
    for (const m of got) {
      assert.equal(m.subject, "greet.hello");
      assert.ok(!m.reply);
    }
  }));

test("binary payload and reply subject are passed through", () =>
  withServer([], async ({ connect }) => {
    const subNc = await connect();
    const pubNc = await connect();
    const c = collect(subNc, "bin.data");
    await subNc.flush();

    const payload = Uint8Array.from({ length: 256 }, (_, i) => i);
    pubNc.publish("bin.data", payload, { reply: "answer.here" });
    const [m] = await c.count(1);
    assert.deepEqual(Uint8Array.from(m.data), payload);
    assert.equal(m.reply, "answer.here");
  }));

test("wildcard * matches exactly one token", () =>
  withServer([], async ({ connect }) => {
    const subNc = await connect();
    const pubNc = await connect();
    const c = collect(subNc, "stock.*");
    await subNc.flush();

    for (const s of [
      "stock", // too few tokens
      "stock.nyse.ibm", // too many tokens
      "stocks.ibm",
      "other.ibm",
      "stock.ibm", // match
      "xstock.ibm",
      "stock.aapl", // match
      "stock.end", // match, end marker
    ]) {
      pubNc.publish(s, enc.encode(s));
    }
    // Messages from one publisher arrive in order, so anything routed to the
    // subscription arrives before the end marker.
    const got = await c.untilSubject("stock.end");
    assert.deepEqual(
      got.map((m) => m.subject),
      ["stock.ibm", "stock.aapl", "stock.end"],
    );
    assert.deepEqual(got.map((m) => dec.decode(m.data)), ["stock.ibm", "stock.aapl", "stock.end"]);
  }));

test("wildcard > matches one or more trailing tokens", () =>
  withServer([], async ({ connect }) => {
    const subNc = await connect();
    const pubNc = await connect();
    const c = collect(subNc, "orders.>");
    await subNc.flush();

    for (const s of [
      "orders", // '>' needs at least one more token
      "order.a",
      "x.orders.a",
      "orders.new", // match
      "orders.eu.de.berlin", // match
      "ordersx.a",
      "orders.end", // match, end marker
    ]) {
      pubNc.publish(s);
    }
    const got = await c.untilSubject("orders.end");
    assert.deepEqual(
      got.map((m) => m.subject),
      ["orders.new", "orders.eu.de.berlin", "orders.end"],
    );
  }));

test("wildcards in the middle and combined", () =>
  withServer([], async ({ connect }) => {
    const subNc = await connect();
    const pubNc = await connect();
    const mid = collect(subNc, "a.*.c");
    const combo = collect(subNc, "*.b.>");
    await subNc.flush();

    for (const s of ["a.b.c", "a.x.c", "a.b", "a.b.c.d", "z.b.c", "z.q.c", "a.c", "z.b"]) {
      pubNc.publish(s);
    }
    pubNc.publish("a.end.c");
    pubNc.publish("end.b.end");
    const gotMid = await mid.untilSubject("a.end.c");
    const gotCombo = await combo.untilSubject("end.b.end");
    assert.deepEqual(gotMid.map((m) => m.subject), ["a.b.c", "a.x.c", "a.end.c"]);
    assert.deepEqual(gotCombo.map((m) => m.subject), ["a.b.c", "a.b.c.d", "z.b.c", "end.b.end"]);
  }));

test("unsubscribe stops delivery", () =>
  withServer([], async ({ connect }) => {
    const subNc = await connect();
    const pubNc = await connect();
    const c = collect(subNc, "unsub.me");
    const marker = collect(subNc, "unsub.marker");
    await subNc.flush();

    pubNc.publish("unsub.me", enc.encode("before"));
    await c.count(1);
    c.sub.unsubscribe();
    await subNc.flush();
    for (let i = 0; i < 5; i++) pubNc.publish("unsub.me", enc.encode("after"));
    pubNc.publish("unsub.marker");
    await marker.count(1);
    // The client counts every MSG the server sends, wanted or not; the marker
    // came after the five, so they would have been counted.
    assert.equal(subNc.stats().inMsgs, 2);
    assert.equal(c.msgs.length, 1);
  }));

test("auto-unsubscribe after max messages", () =>
  withServer([], async ({ connect }) => {
    const subNc = await connect();
    const pubNc = await connect();
    const n = 5;
    // Sends SUB then UNSUB <sid> 5: the server removes the interest after 5.
    const c = collect(subNc, "auto.unsub", { max: n });
    const marker = collect(subNc, "auto.marker");
    await subNc.flush();

    for (let i = 0; i < n + 7; i++) pubNc.publish("auto.unsub", enc.encode(String(i)));
    pubNc.publish("auto.marker");
    await c.count(n);
    await marker.count(1);
    // The client counts every MSG the server sends: n plus the marker, which
    // was published after all the others.
    assert.equal(subNc.stats().inMsgs, n + 1);
    assert.deepEqual(
      c.msgs.map((m) => dec.decode(m.data)),
      ["0", "1", "2", "3", "4"],
    );
  }));

test("10000 messages arrive in order", () =>
  withServer([], async ({ connect }) => {
    const subNc = await connect();
    const pubNc = await connect();
    const n = 10_000;
    const c = collect(subNc, "many.msgs");
    await subNc.flush();

    for (let i = 0; i < n; i++) {
      const buf = new Uint8Array(104);
      new DataView(buf.buffer).setUint32(0, i);
      pubNc.publish("many.msgs", buf);
    }
    await pubNc.flush();
    const got = await c.count(n);
    assert.equal(got.length, n);
    for (let i = 0; i < n; i++) {
      const m = got[i];
      assert.equal(m.data.length, 104);
      assert.equal(new DataView(m.data.buffer, m.data.byteOffset, 4).getUint32(0), i);
    }
  }));

test("a message of exactly max_payload is delivered, a larger one is refused", () =>
  withServer([], async ({ connect }) => {
    const subNc = await connect();
    const pubNc = await connect();
    assert.equal(pubNc.info.max_payload, MAX_PAYLOAD);
    const c = collect(subNc, "big.ok");
    await subNc.flush();

    const payload = Uint8Array.from({ length: MAX_PAYLOAD }, (_, i) => i % 251);
    pubNc.publish("big.ok", payload);
    const [m] = await c.count(1);
    assert.equal(m.data.length, MAX_PAYLOAD);
    assert.deepEqual(Uint8Array.from(m.data), payload);

    assert.throws(
      () => pubNc.publish("big.no", new Uint8Array(MAX_PAYLOAD + 1)),
      (err) => err.code === ErrorCode.MaxPayloadExceeded,
    );
    // The connection is still usable.
    pubNc.publish("big.ok", enc.encode("small"));
    const got = await c.count(2);
    assert.equal(dec.decode(got[1].data), "small");
  }));
