// The whole FAPI 2.0 flow against the example AS, run as its own process
// (`node server.js`) with every key in Custos on a fresh SoftHSM2 token, and
// an independent relying party, panva's openid-client 6:
// PAR -> authorization (scripted login and consent) -> JARM response ->
// token request with private_key_jwt (the assertion signed by Custos with the
// client's keyset) and DPoP -> ID token, access token, userinfo, signed
// introspection. Then a rotation in Custos, SIGHUP to the AS, and a second
// flow: new tokens carry the new kid, old ones still verify.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import net from "node:net";
import { fileURLToPath } from "node:url";
import * as client from "openid-client";
import * as jose from "jose";
import { startDaemon } from "../../../clients/node/test/daemon.js";
import { KEYSETS, RESOURCE } from "../server.js";

const REDIRECT_URI = "https://client.example/cb";
const SERVER = fileURLToPath(new URL("../server.js", import.meta.url));

const freePort = () =>
  new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

/** Starts `node server.js`; resolves when it says it listens. */
function startAs(env) {
  const proc = spawn(process.execPath, [SERVER], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  proc.stderr.on("data", (d) => { err += d; });
  const waitFor = (needle) =>
    new Promise((resolve, reject) => {
      const check = () => {
        if (out.includes(needle)) resolve();
      };
      proc.stdout.on("data", (d) => { out += d; check(); });
      proc.once("exit", (code) => reject(new Error(`the AS exited (${code}): ${err}`)));
      check();
    });
  return { proc, waitFor, output: () => out + err };
}

/** A user agent: follows redirects with cookies, fills the login and consent forms. */
async function authorize(url, login) {
  const jar = new Map();
  let next = { url: new URL(url), method: "GET" };
  for (let hops = 0; hops < 20; hops++) {
    const res = await fetch(next.url, {
      method: next.method,
      redirect: "manual",
      headers: {
        cookie: [...jar].map(([k, v]) => `${k}=${v}`).join("; "),
        ...(next.body ? { "content-type": "application/x-www-form-urlencoded" } : {}),
      },
      body: next.body,
    });
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(";");
      const i = pair.indexOf("=");
      jar.set(pair.slice(0, i), pair.slice(i + 1));
    }
    const location = res.headers.get("location");
    if (process.env.TRACE) console.error(next.method, String(next.url), res.status, location);
    if (location?.startsWith(REDIRECT_URI)) return new URL(location);
    if (location) {
      next = { url: new URL(location, next.url), method: "GET" };
      continue;
    }
    const html = await res.text();
    const action = html.match(/action="([^"]+)"/)?.[1];
    assert.ok(res.ok && action, `unexpected page ${res.status}: ${html}`);
    next = { url: new URL(action, next.url), method: "POST", body: new URLSearchParams({ login }).toString() };
  }
  throw new Error("too many redirects");
}

const sha256 = (s) => createHash("sha256").update(s).digest("hex");
const signingInput = (jws) => jws.split(".").slice(0, 2).join(".");
const kidOf = (jws) => jose.decodeProtectedHeader(jws).kid;

test("a FAPI 2.0 flow on node-oidc-provider with every signature made by Custos", async () => {
  const daemon = await startDaemon({ audit: true });
  const custos = daemon.client;
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  // The client's key is in Custos too: its client assertions are signed there.
  await custos.createKeyset("client-1-ca", "ES256", ["client_assertion"]);
  const clientJwks = await custos.jwks({ keyset: "client-1-ca" });
  const as = startAs({
    CUSTOS_SOCKET: daemon.socket, PORT: String(port), ISSUER: issuer,
    CLIENT_JWKS: JSON.stringify(clientJwks), REDIRECT_URI,
  });
  try {
    await as.waitFor("signing through Custos");

    // openid-client: private_key_jwt whose assertion Custos signs (aud = issuer, FAPI 2.0).
    const custosClientAuth = async (server, _metadata, body) => {
      const { token } = await custos.signClientAssertion("client-1-ca", "client-1", server.issuer);
      body.set("client_id", "client-1");
      body.set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
      body.set("client_assertion", token);
    };
    const relyingParty = async () => {
      const c = await client.discovery(
        new URL(issuer), "client-1",
        { authorization_signed_response_alg: "ES256", id_token_signed_response_alg: "ES256", userinfo_signed_response_alg: "ES256" },
        custosClientAuth,
        { execute: [client.allowInsecureRequests] },
      );
      client.useJwtResponseMode(c);
      return c;
    };
    let config = await relyingParty();
    const dpopKey = await client.randomDPoPKeyPair("ES256");
    let DPoP = client.getDPoPHandle(config, dpopKey);
    const issued = [];

    const flow = async (resource) => {
      const verifier = client.randomPKCECodeVerifier();
      const state = client.randomState();
      const url = await client.buildAuthorizationUrlWithPAR(config, {
        redirect_uri: REDIRECT_URI,
        scope: "openid accounts",
        ...(resource ? { resource } : {}),
        response_mode: "jwt",
        state,
        code_challenge: await client.calculatePKCECodeChallenge(verifier),
        code_challenge_method: "S256",
      }, { DPoP });
      assert.ok(url.searchParams.get("request_uri"), "PAR gave a request_uri");
      const callback = await authorize(url, "alice");
      const jarm = callback.searchParams.get("response");
      assert.ok(jarm, `a JARM response: ${callback}`);
      const tokens = await client.authorizationCodeGrant(
        config, callback, { pkceCodeVerifier: verifier, expectedState: state }, undefined, { DPoP },
      );
      issued.push(jarm, tokens.id_token);
      if (resource) issued.push(tokens.access_token);
      return { jarm, tokens };
    };

    const first = await flow(RESOURCE);
    const claims = first.tokens.claims();
    assert.equal(claims.sub, "alice");
    assert.equal(claims.iss, issuer);
    assert.equal(first.tokens.token_type.toLowerCase(), "dpop");

    // The AS's published keys are Custos's, public only.
    const asJwks = await (await fetch(`${issuer}/jwks`)).json();
    const custosKids = new Set([
      ...(await custos.jwks({ keyset: KEYSETS.sign.name })).keys.map((k) => k.kid),
      ...(await custos.jwks({ keyset: KEYSETS.accessToken.name })).keys.map((k) => k.kid),
    ]);
    assert.deepEqual(new Set(asJwks.keys.map((k) => k.kid)), custosKids);
    for (const k of asJwks.keys) {
      for (const secret of ["d", "p", "q", "dp", "dq", "qi"]) assert.equal(k[secret], undefined);
    }

    // The access token: RFC 9068, PS256 (salt 32, as node:crypto checks it),
    // DPoP-bound to the client's key, verified with jose against the AS JWKS.
    const keySet = jose.createLocalJWKSet(asJwks);
    const at = await jose.jwtVerify(first.tokens.access_token, keySet, {
      issuer, audience: RESOURCE, typ: "at+jwt", algorithms: ["PS256"],
    });
    assert.equal(at.payload.cnf.jkt, await jose.calculateJwkThumbprint(await jose.exportJWK(dpopKey.publicKey)));
    assert.equal(at.payload.client_id, "client-1");

    // Rotation in Custos; SIGHUP makes the AS re-read its keysets.
    const oldKid = kidOf(first.tokens.id_token);
    const rotated = await custos.rotate(KEYSETS.sign.name, true);
    const newKid = rotated.versions.find((v) => v.state === "active").kid;
    assert.notEqual(newKid, oldKid);
    as.proc.kill("SIGHUP");
    await as.waitFor("keys reloaded from Custos");
    // openid-client caches the JWKS and refetches on an unknown kid only once
    // its copy is 60 s old (why Custos publishes keys ahead of use: policy
    // publish_ahead). This test does not wait: the RP starts afresh.
    config = await relyingParty();
    DPoP = client.getDPoPHandle(config, dpopKey);
    // This time no resource: the access token is for the userinfo endpoint,
    // whose response (signed, userinfo_signed_response_alg) Custos signs too.
    const second = await flow();
    let signedUserinfo;
    config[client.customFetch] = async (url, options) => {
      const res = await fetch(url, options);
      if (String(url).endsWith("/me")) signedUserinfo = await res.clone().text();
      return res;
    };
    const userinfo = await client.fetchUserInfo(config, second.tokens.access_token, "alice", { DPoP });
    assert.equal(userinfo.sub, "alice");
    assert.equal(kidOf(signedUserinfo), newKid, "the signed UserInfo response is Custos's");
    issued.push(signedUserinfo);
    assert.equal(kidOf(second.tokens.id_token), newKid, "new ID tokens carry the new kid");
    assert.equal(kidOf(second.jarm), newKid, "new JARM responses too");
    const rotatedJwks = await (await fetch(`${issuer}/jwks`)).json();
    const rotatedSet = jose.createLocalJWKSet(rotatedJwks);
    await jose.jwtVerify(first.tokens.id_token, rotatedSet, { issuer, audience: "client-1" });
    await jose.jwtVerify(second.tokens.id_token, rotatedSet, { issuer, audience: "client-1" });

    // A signed introspection response (RFC 9701) for the opaque token.
    const { token: assertion } = await custos.signClientAssertion("client-1-ca", "client-1", issuer);
    const introspection = await fetch(`${issuer}/token/introspection`, {
      method: "POST",
      headers: { accept: "application/token-introspection+jwt", "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        token: second.tokens.access_token, client_id: "client-1",
        client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", client_assertion: assertion,
      }),
    });
    const introJws = await introspection.text();
    assert.equal(introspection.status, 200, introJws);
    const intro = await jose.jwtVerify(introJws, rotatedSet, { issuer, typ: "token-introspection+jwt" });
    assert.equal(intro.payload.token_introspection.active, true);
    issued.push(introJws);

    // Every JWS the AS issued was signed by Custos: one audit line per
    // token, with that token's signing-input digest and kid, and no others.
    const lines = readFileSync(daemon.auditFile, "utf8").trim().split("\n").map((l) => JSON.parse(l))
      .filter((l) => l.operation === "sign_jws_input" && l.outcome === "ok");
    assert.equal(lines.length, issued.length, JSON.stringify(lines));
    for (const jws of issued) {
      const line = lines.find((l) => l.input_sha256 === sha256(signingInput(jws)));
      assert.ok(line, `no audit line for ${jose.decodeProtectedHeader(jws).typ ?? "a token"}`);
      assert.equal(line.kid, kidOf(jws));
    }
  } finally {
    as.proc.kill("SIGTERM");
    await daemon.stop();
  }
});
