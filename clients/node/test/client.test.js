// The Node client against a real custosd (a fresh token and daemon per test); signatures checked with node:crypto.
import assert from "node:assert/strict";
import { afterEach, beforeEach, test } from "node:test";
import crypto from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { CustosError } from "../src/index.js";
import { startDaemon } from "./daemon.js";

const ISSUER = "https://as.bank";
let d;
let c;
beforeEach(async () => {
  d = await startDaemon();
  c = d.client;
});
afterEach(async () => d.stop());

const b64d = (s) => Buffer.from(s, "base64url");

/** An independent ES256 check against a JWK Set; returns the claims. */
function verifyEs256(jws, jwks) {
  const [head, payload, sig] = jws.split(".");
  const header = JSON.parse(b64d(head));
  assert.equal(header.alg, "ES256");
  const jwk = jwks.keys.find((k) => k.kid === header.kid);
  const key = crypto.createPublicKey({ key: jwk, format: "jwk" });
  const ok = crypto.verify("sha256", Buffer.from(`${head}.${payload}`), { key, dsaEncoding: "ieee-p1363" }, b64d(sig));
  assert.ok(ok, "the signature verifies");
  return JSON.parse(b64d(payload));
}

const exp = () => Math.floor(Date.now() / 1000) + 300;

test("ID token, JARM, access token, introspection sign and verify", async () => {
  await c.createKeyset("as-id", "ES256", ["id_token"], { issuer: ISSUER });
  await c.createKeyset("as-jarm", "ES256", ["jarm"], { issuer: ISSUER });
  await c.createKeyset("as-at", "ES256", ["access_token"], { issuer: ISSUER });
  await c.createKeyset("as-intro", "ES256", ["introspection"], { issuer: ISSUER });
  const id = await c.signIdToken("as-id", { sub: "alice", aud: "client-1", exp: exp() }, { code: "abc" });
  const claims = verifyEs256(id.token, await c.jwks({ keyset: "as-id" }));
  assert.equal(claims.iss, ISSUER);
  assert.ok(claims.c_hash);
  const jarm = await c.signJarmResponse("as-jarm", "client-1", { code: "c-1", state: "s-1" });
  assert.equal(verifyEs256(jarm.token, await c.jwks({ keyset: "as-jarm" })).code, "c-1");
  const at = await c.signAccessToken("as-at", { sub: "alice", aud: "https://rs.bank", client_id: "client-1", exp: exp() });
  verifyEs256(at.token, await c.jwks({ keyset: "as-at" }));
  const v = await c.verifyAccessToken(at.token, { issuer: ISSUER, allow_bearer: true });
  assert.ok(v.valid, JSON.stringify(v));
  const intro = await c.signIntrospectionResponse("as-intro", "client-1", { active: true });
  assert.equal(verifyEs256(intro.token, await c.jwks({ keyset: "as-intro" })).token_introspection.active, true);
});

test("generic JWTs, batches, and a tampered token is a verdict", async () => {
  await c.createKeyset("gen", "ES256", ["generic"]);
  const jwks = await c.jwks({ keyset: "gen" });
  const s = await c.signJwt("gen", { hello: "world" });
  assert.equal(verifyEs256(s.jws, jwks).hello, "world");
  assert.ok((await c.verifyJws(s.jws, { keyset: "gen" })).valid);
  assert.ok((await c.verifyJws(s.jws, { jwks })).valid);
  const [h, , sig] = s.jws.split(".");
  const forged = [h, Buffer.from('{"hello":"mallory"}').toString("base64url"), sig].join(".");
  const verdict = await c.verifyJws(forged, { keyset: "gen" });
  assert.equal(verdict.valid, false);
  assert.ok(verdict.reason);
  const items = await c.signJwtBatch("gen", [{ i: 1 }, { i: 2 }]);
  assert.deepEqual(items.map((i) => verifyEs256(i.signed.jws, jwks).i), [1, 2]);
});

test("client assertions, request objects, HTTP message signatures, JWE", async () => {
  await c.createKeyset("client-1-ca", "ES256", ["client_assertion"]);
  await c.createKeyset("client-1-ro", "ES256", ["request_object"]);
  await c.createKeyset("rs-http", "ES256", ["http_message"]);
  await c.createKeyset("as-enc", "RSA-OAEP-256", ["request_object_decryption"], { issuer: ISSUER });
  const ca = await c.signClientAssertion("client-1-ca", "client-1", "https://as.bank/token");
  const caJwks = await c.jwks({ keyset: "client-1-ca" });
  const check = { jwks: caJwks, client_id: "client-1", audiences: ["https://as.bank/token"] };
  assert.ok((await c.verifyClientAssertion(ca.token, check)).valid);
  assert.equal((await c.verifyClientAssertion(ca.token, check)).valid, false, "accepted once");
  const ro = await c.signRequestObject("client-1-ro", {
    iss: "client-1", client_id: "client-1", aud: ISSUER, response_type: "code",
    redirect_uri: "https://client/cb", scope: "openid",
  });
  const roJwks = await c.jwks({ keyset: "client-1-ro" });
  assert.ok((await c.verifyRequestObject(ro.token, roJwks, "client-1", ISSUER)).valid);

  const message = {
    method: "POST",
    target_uri: "https://rs.bank/payments",
    fields: [{ name: "authorization", value: "DPoP abc" }, { name: "content-type", value: "application/json" }],
    body: Buffer.from('{"amount": 1}'),
  };
  const sig = await c.signHttpMessage("rs-http", { message });
  const sent = {
    ...message,
    fields: [...message.fields,
      { name: "content-digest", value: sig.content_digest },
      { name: "signature-input", value: sig.signature_input },
      { name: "signature", value: sig.signature }],
  };
  assert.ok((await c.verifyHttpMessage({ message: sent, keyset: "rs-http" })).valid);
  const changed = await c.verifyHttpMessage({ message: { ...sent, body: Buffer.from('{"amount": 1000}') }, keyset: "rs-http" });
  assert.equal(changed.valid, false);

  // RSA-OAEP-256 + A256GCM, made with node:crypto, decrypted in the HSM.
  const jwk = (await c.jwks({ keyset: "as-enc" })).keys[0];
  const pub = crypto.createPublicKey({ key: { kty: "RSA", n: jwk.n, e: jwk.e }, format: "jwk" });
  const header = Buffer.from(JSON.stringify({ alg: "RSA-OAEP-256", enc: "A256GCM", kid: jwk.kid })).toString("base64url");
  const cek = crypto.randomBytes(32);
  const iv = crypto.randomBytes(12);
  const wrapped = crypto.publicEncrypt({ key: pub, padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha256" }, cek);
  const gcm = crypto.createCipheriv("aes-256-gcm", cek, iv);
  gcm.setAAD(Buffer.from(header));
  const ct = Buffer.concat([gcm.update("inner request object"), gcm.final()]);
  const jwe = [header, wrapped.toString("base64url"), iv.toString("base64url"), ct.toString("base64url"), gcm.getAuthTag().toString("base64url")].join(".");
  const out = await c.decryptJwe("as-enc", jwe);
  assert.equal(Buffer.from(out.plaintext).toString(), "inner request object");
});

test("errors keep the gRPC status and the daemon's message; admin round trip", async () => {
  await assert.rejects(c.signJwt("nope", {}), (e) => e instanceof CustosError && e.code === grpc.status.NOT_FOUND && e.details.includes("nope"));
  await c.createKeyset("as-id2", "ES256", ["id_token"], { issuer: ISSUER });
  await assert.rejects(c.signJwt("as-id2", {}, { purpose: "id_token" }), (e) => e.code === grpc.status.FAILED_PRECONDITION);
  await assert.rejects(c.signIdToken("as-id2", "[1, 2]"), (e) => e.code === grpc.status.INVALID_ARGUMENT);
  const ks = await c.createKeyset("rot", "ES256", ["generic"]);
  const rotated = await c.rotate("rot", true);
  assert.notEqual(rotated.versions.at(-1).kid, ks.versions[0].kid);
  const p = await c.setPolicy("rot", { rotation_period: "90d" });
  assert.equal(p.policy.rotation_period, 90 * 86400);
  assert.ok((await c.listKeysets()).some((k) => k.name === "rot"));
});
