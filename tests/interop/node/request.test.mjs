// Request/reply, the no-responders status, and message headers.

import assert from "node:assert/strict";
import { test } from "node:test";
import { ErrorCode, headers } from "nats";
import { collect, withServer, WAIT_MS } from "./helpers.mjs";

const enc = new TextEncoder();
const dec = new TextDecoder();

function responder(nc, subject, opts = {}) {
  return nc.subscribe(subject, {
    ...opts,
    callback: (err, m) => {
      if (!err) m.respond(enc.encode(`re:${dec.decode(m.data)}`));
    },
  });
}

test("request/reply", () =>
  withServer([], async ({ connect }) => {
    const svc = await connect();
    const cli = await connect();
    responder(svc, "svc.echo");
    await svc.flush();

    const resp = await cli.request("svc.echo", enc.encode("hello"), { timeout: WAIT_MS });
    assert.equal(dec.decode(resp.data), "re:hello");
  }));

test("many concurrent requests each get their own answer", () =>
  withServer([], async ({ connect }) => {
    const svc = await connect();
    const cli = await connect();
    responder(svc, "svc.many");
    await svc.flush();

    const answers = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        cli.request("svc.many", enc.encode(String(i)), { timeout: WAIT_MS }),
      ),
    );
    assert.deepEqual(
      answers.map((a) => dec.decode(a.data)),
      Array.from({ length: 200 }, (_, i) => `re:${i}`),
    );
  }));

test("request with a unique inbox per request (noMux)", () =>
  withServer([], async ({ connect }) => {
    const svc = await connect();
    const cli = await connect();
    responder(svc, "svc.nomux");
    await svc.flush();

    const resp = await cli.request("svc.nomux", enc.encode("x"), { timeout: WAIT_MS, noMux: true });
    assert.equal(dec.decode(resp.data), "re:x");
  }));

test("request to queue-group responders gets one answer each", () =>
  withServer([], async ({ connect }) => {
    const cli = await connect();
    let handled = 0;
    for (const name of ["a", "b", "c"]) {
      const nc = await connect();
      nc.subscribe("svc.q", {
        queue: "responders",
        callback: (err, m) => {
          handled++;
          m.respond(enc.encode(name));
        },
      });
      await nc.flush();
    }
    for (let i = 0; i < 30; i++) {
      const r = await cli.request("svc.q", undefined, { timeout: WAIT_MS });
      assert.ok(["a", "b", "c"].includes(dec.decode(r.data)));
    }
    assert.equal(handled, 30);
  }));

async function assertNoResponders(p) {
  // The timeout is a safety net: the server answers at once with a 503
  // status, which must not turn into a timeout.
  await assert.rejects(p, (err) => {
    assert.equal(err.code, ErrorCode.NoResponders, `got ${err.code}: ${err.message}`);
    return true;
  });
}

test("no responders (503)", () =>
  withServer([], async ({ connect }) => {
    const cli = await connect();
    await assertNoResponders(cli.request("nobody.listens.here", enc.encode("anyone?"), { timeout: WAIT_MS }));
  }));

test("no responders with a unique inbox (noMux)", () =>
  withServer([], async ({ connect }) => {
    const cli = await connect();
    await assertNoResponders(
      cli.request("nobody.listens.nomux", undefined, { timeout: WAIT_MS, noMux: true }),
    );
  }));

test("no responders once the only responder has left", () =>
  withServer([], async ({ connect }) => {
    const svc = await connect();
    const cli = await connect();
    const sub = responder(svc, "svc.gone");
    await svc.flush();
    const r = await cli.request("svc.gone", enc.encode("1"), { timeout: WAIT_MS });
    assert.equal(dec.decode(r.data), "re:1");
    sub.unsubscribe();
    await svc.flush();
    await assertNoResponders(cli.request("svc.gone", enc.encode("2"), { timeout: WAIT_MS }));
  }));

test("headers are published and received", () =>
  withServer([], async ({ connect }) => {
    const subNc = await connect();
    const pubNc = await connect();
    const c = collect(subNc, "hdr.test");
    await subNc.flush();

    const h = headers();
    h.set("X-Trace-Id", "abc-123");
    h.set("Content-Type", "application/json");
    h.set("X-Colon", "a:b:c");
    h.append("X-Multi", "one");
    h.append("X-Multi", "two");
    pubNc.publish("hdr.test", enc.encode('{"k":1}'), { headers: h });
    const only = headers();
    only.set("Only", "headers");
    pubNc.publish("hdr.test", undefined, { headers: only });
    pubNc.publish("hdr.test", enc.encode("no headers"));

    const [m1, m2, m3] = await c.count(3);
    assert.equal(dec.decode(m1.data), '{"k":1}');
    assert.ok(m1.headers, "first message has headers");
    assert.equal(m1.headers.get("X-Trace-Id"), "abc-123");
    assert.equal(m1.headers.get("Content-Type"), "application/json");
    assert.equal(m1.headers.get("X-Colon"), "a:b:c");
    assert.deepEqual(m1.headers.values("X-Multi"), ["one", "two"]);
    assert.equal(m2.data.length, 0);
    assert.equal(m2.headers?.get("Only"), "headers");
    assert.equal(dec.decode(m3.data), "no headers");
    assert.equal(m3.headers, undefined);
  }));

test("request with headers, reply with headers", () =>
  withServer([], async ({ connect }) => {
    const svc = await connect();
    const cli = await connect();
    const seen = [];
    svc.subscribe("svc.hdr", {
      callback: (err, m) => {
        seen.push(m.headers?.get("X-Trace"));
        const rh = headers();
        rh.set("X-Reply-To-Trace", m.headers?.get("X-Trace") ?? "");
        m.respond(enc.encode(`ok:${dec.decode(m.data)}`), { headers: rh });
      },
    });
    await svc.flush();

    const h = headers();
    h.set("X-Trace", "t-42");
    const resp = await cli.request("svc.hdr", enc.encode("ping"), { timeout: WAIT_MS, headers: h });
    assert.equal(dec.decode(resp.data), "ok:ping");
    assert.equal(resp.headers?.get("X-Reply-To-Trace"), "t-42");
    assert.deepEqual(seen, ["t-42"]);
  }));
