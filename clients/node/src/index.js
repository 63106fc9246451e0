// Node client for Custos: one method per RPC, claims as objects, errors as
// CustosError (gRPC status code and the daemon's message). Invalid presented
// tokens are verdicts ({valid, reason, detail}), not errors.
//
// The .proto files are loaded at run time from $CUSTOS_PROTO_DIR, else from
// the repository's proto/ (../../../proto from this file).
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as loader from "@grpc/proto-loader";

const PROTO_DIR =
  process.env.CUSTOS_PROTO_DIR ?? fileURLToPath(new URL("../../../proto", import.meta.url));

/** A call custosd refused or could not do. */
export class CustosError extends Error {
  constructor(rpc, code, message) {
    super(`${rpc}: ${grpc.status[code] ?? code}: ${message}`);
    this.rpc = rpc;
    /** The gRPC status code (a number; `grpc.status` names it). */
    this.code = code;
    /** The daemon's message. */
    this.details = message;
  }
}

const json = (v) => (typeof v === "string" ? v : JSON.stringify(v));

function load() {
  const def = loader.loadSync(
    ["custos/v1/keys.proto", "custos/v1/signing.proto", "custos/v1/verify.proto"],
    { keepCase: true, longs: Number, defaults: true, oneofs: true, includeDirs: [PROTO_DIR] },
  );
  return grpc.loadPackageDefinition(def).custos.v1;
}

/** A connection to custosd over its Unix socket or TCP with mutual TLS. */
export class Custos {
  constructor(target, credentials, timeoutMs = 30_000) {
    const v1 = load();
    this.timeoutMs = timeoutMs;
    this.admin = new v1.KeyAdmin(target, credentials);
    this.signer = new v1.Signer(target, credentials);
    this.verifier = new v1.Verifier(target, credentials);
  }

  /**
   * `{socket}` for the Unix socket (grpc-js sends "localhost" as the
   * authority there), or `{target, cert, key, ca}` (PEM Buffers) for TCP.
   */
  static connect({ socket, target, cert, key, ca, timeoutMs } = {}) {
    if (socket) return new Custos(`unix://${socket}`, grpc.credentials.createInsecure(), timeoutMs);
    if (target && cert && key && ca) {
      return new Custos(target, grpc.credentials.createSsl(ca, key, cert), timeoutMs);
    }
    throw new Error("give {socket} or {target, cert, key, ca}: TCP needs mutual TLS");
  }

  close() {
    for (const c of [this.admin, this.signer, this.verifier]) c.close();
  }

  call(stub, rpc, request) {
    return new Promise((resolve, reject) => {
      stub[rpc](request, { deadline: Date.now() + this.timeoutMs }, (err, reply) => {
        if (err) reject(new CustosError(rpc, err.code, err.details));
        else resolve(reply);
      });
    });
  }

  // Key administration.
  createKeyset(name, alg, purposes, fields = {}) {
    return this.call(this.admin, "CreateKeyset", { name, alg, purposes, ...fields });
  }
  async listKeysets() {
    return (await this.call(this.admin, "ListKeysets", {})).keysets;
  }
  getKeyset(name) {
    return this.call(this.admin, "GetKeyset", { name });
  }
  async jwks({ keyset = "", issuer = "" } = {}) {
    return JSON.parse((await this.call(this.admin, "GetJwks", { keyset, issuer })).jwks_json);
  }
  rotate(name, now = false) {
    return this.call(this.admin, "RotateKeyset", { name, now });
  }
  activate(name, kid) {
    return this.call(this.admin, "ActivateVersion", { name, kid });
  }
  retire(name, kid) {
    return this.call(this.admin, "RetireVersion", { name, kid });
  }
  disable(name, kid) {
    return this.call(this.admin, "DisableVersion", { name, kid });
  }
  destroy(name, kid, fields = {}) {
    return this.call(this.admin, "DestroyVersion", { name, kid, ...fields });
  }
  setPolicy(name, fields) {
    return this.call(this.admin, "SetPolicy", { name, ...fields });
  }

  // Signing.
  signJwt(keyset, claims, { purpose = "generic", typ = "" } = {}) {
    return this.call(this.signer, "SignJwt", { keyset, purpose, typ, claims_json: json(claims) });
  }
  async signJwtBatch(keyset, claims, { purpose = "generic", typ = "" } = {}) {
    const reply = await this.call(this.signer, "SignJwtBatch", {
      keyset, purpose, typ, claims_json: claims.map(json),
    });
    return reply.items;
  }
  signIdToken(keyset, claims, fields = {}) {
    return this.call(this.signer, "SignIdToken", { keyset, claims_json: json(claims), ...fields });
  }
  signJarmResponse(keyset, clientId, params, fields = {}) {
    return this.call(this.signer, "SignJarmResponse", {
      keyset, client_id: clientId, params_json: json(params), ...fields,
    });
  }
  signRequestObject(keyset, claims, fields = {}) {
    return this.call(this.signer, "SignRequestObject", { keyset, claims_json: json(claims), ...fields });
  }
  signClientAssertion(keyset, clientId, audience, fields = {}) {
    return this.call(this.signer, "SignClientAssertion", {
      keyset, client_id: clientId, audience, ...fields,
    });
  }
  signAccessToken(keyset, claims, fields = {}) {
    return this.call(this.signer, "SignAccessToken", { keyset, claims_json: json(claims), ...fields });
  }
  signIntrospectionResponse(keyset, audience, response, fields = {}) {
    return this.call(this.signer, "SignIntrospectionResponse", {
      keyset, audience, response_json: json(response), ...fields,
    });
  }
  /**
   * Signs a JWS signing input the caller built (`BASE64URL(header).BASE64URL(payload)`);
   * resolves to `{signature, kid, alg}` (signature a Buffer, ECDSA as r||s).
   */
  signJwsInput(keyset, purpose, signingInput) {
    return this.call(this.signer, "SignJwsInput", {
      keyset, purpose, signing_input: String(signingInput),
    });
  }
  signHttpMessage(keyset, fields) {
    return this.call(this.signer, "SignHttpMessage", { keyset, ...fields });
  }
  decryptJwe(keyset, jwe) {
    return this.call(this.signer, "DecryptJwe", { keyset, jwe });
  }

  // Verification: an invalid token is a verdict.
  verifyAccessToken(token, fields = {}) {
    return this.call(this.verifier, "VerifyAccessToken", { token, ...fields });
  }
  verifyJws(token, { keyset, jwks, typ = "" } = {}) {
    const keys = jwks !== undefined ? { jwks_json: json(jwks) } : { keyset };
    return this.call(this.verifier, "VerifyJws", { token, typ, ...keys });
  }
  verifyRequestObject(token, jwks, clientId, issuer, kind = "") {
    return this.call(this.verifier, "VerifyRequestObject", {
      token, jwks_json: json(jwks), client_id: clientId, issuer, kind,
    });
  }
  verifyClientAssertion(token, { jwks, ...fields }) {
    return this.call(this.verifier, "VerifyClientAssertion", { token, jwks_json: json(jwks), ...fields });
  }
  verifyHttpMessage(fields) {
    return this.call(this.verifier, "VerifyHttpMessage", fields);
  }
}
