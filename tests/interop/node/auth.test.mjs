// Authentication: user/password and token, accepted and refused.

import assert from "node:assert/strict";
import { test } from "node:test";
import { ErrorCode } from "nats";
import { collect, withServer } from "./helpers.mjs";

const enc = new TextEncoder();
const dec = new TextDecoder();

async function roundtrip(nc, subject) {
  const c = collect(nc, subject);
  nc.publish(subject, enc.encode("authed"));
  const [m] = await c.count(1);
  assert.equal(dec.decode(m.data), "authed");
}

async function assertRefused(p) {
  await assert.rejects(p, (err) => {
    assert.equal(err.code, ErrorCode.AuthorizationViolation, `got ${err.code}: ${err.message}`);
    return true;
  });
}

const USERPASS = ["--user", "alice", "--pass", "s3cret"];
const TOKEN = ["--auth", "tok-123"];

test("user/password accepted", () =>
  withServer(USERPASS, async ({ connect }) => {
    const nc = await connect({ user: "alice", pass: "s3cret" });
    await roundtrip(nc, "auth.user");
  }));

for (const [name, creds] of [
  ["wrong password", { user: "alice", pass: "wrong" }],
  ["wrong user", { user: "mallory", pass: "s3cret" }],
  ["no credentials", {}],
]) {
  test(`user/password refused: ${name}`, () =>
    withServer(USERPASS, async ({ connect }) => {
      await assertRefused(connect(creds));
    }));
}

test("token accepted", () =>
  withServer(TOKEN, async ({ connect }) => {
    const nc = await connect({ token: "tok-123" });
    await roundtrip(nc, "auth.token");
  }));

for (const [name, creds] of [
  ["wrong token", { token: "not-the-token" }],
  ["missing token", {}],
]) {
  test(`token refused: ${name}`, () =>
    withServer(TOKEN, async ({ connect }) => {
      await assertRefused(connect(creds));
    }));
}

test("a refused client does not disturb an authorized one", () =>
  withServer(TOKEN, async ({ connect }) => {
    const good = await connect({ token: "tok-123" });
    const c = collect(good, "auth.mixed");
    await good.flush();
    await assertRefused(connect({ token: "nope" }));
    good.publish("auth.mixed", enc.encode("still here"));
    const [m] = await c.count(1);
    assert.equal(dec.decode(m.data), "still here");
  }));
