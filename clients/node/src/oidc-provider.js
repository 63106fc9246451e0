// node-oidc-provider (9.x) signing through Custos: ExternalSigningKey
// subclasses whose sign() sends the signing input oidc-provider built to
// Custos's SignJwsInput, and the `jwks` configuration built from Custos
// keysets. The provider process holds public keys only.
//
//   import { ExternalSigningKey } from "oidc-provider";
//   import { oidcProviderKeys } from "@custos/client/oidc-provider";
//   const keys = await oidcProviderKeys(custos, {
//     ExternalSigningKey, keyset: "as-sign", accessTokenKeyset: "as-at" });
//   new Provider(issuer, { jwks: keys.jwks, features: { externalSigningSupport: { enabled: true }, ... } });
//
// ExternalSigningKey is passed in, not imported, so the class is the one of
// the provider the application runs (instanceof must hold).
import { createPublicKey } from "node:crypto";

const decode = (part) => JSON.parse(Buffer.from(part, "base64url").toString("utf8"));

/**
 * Which Custos purpose a signing input from oidc-provider is for. oidc-provider
 * signs every token kind with keys from one keystore, so the key learns the
 * kind from what it is asked to sign: `typ` for access tokens and
 * introspection responses, no `iat` for JARM (oidc-provider omits it there),
 * `exp` for ID tokens, and otherwise a signed UserInfo response. A wrong guess
 * fails closed: Custos checks the purpose's rules and refuses what breaks them.
 */
export function purposeOf(signingInput) {
  const [h, p] = String(signingInput).split(".");
  const header = decode(h);
  const claims = decode(p);
  const typ = String(header.typ ?? "").toLowerCase().replace(/^application\//, "");
  if (typ === "at+jwt") return "access_token";
  if (typ === "token-introspection+jwt") return "introspection";
  if (typ && typ !== "jwt") {
    throw new Error(`Custos does not sign tokens of typ ${header.typ} for oidc-provider`);
  }
  if (claims.iat === undefined && ("code" in claims || "error" in claims)) return "jarm";
  if (claims.exp !== undefined) return "id_token";
  return "userinfo";
}

/** An ExternalSigningKey class (for the given oidc-provider) backed by Custos. */
export function custosSigningKeyClass(ExternalSigningKey) {
  return class CustosSigningKey extends ExternalSigningKey {
    #custos;
    #keyset;
    #jwk;
    #active;

    /**
     * `jwk`: the version's public JWK from Custos; `active`: whether it is
     * the keyset's signing version (others are published for verification
     * only, with key_ops ["verify"], so oidc-provider never picks them).
     */
    constructor(custos, keyset, jwk, active) {
      super();
      this.#custos = custos;
      this.#keyset = keyset;
      this.#jwk = jwk;
      this.#active = active;
      this.kid = jwk.kid;
      this.alg = jwk.alg;
    }

    get key_ops() {
      return this.#active ? undefined : ["verify"];
    }

    get keyset() {
      return this.#keyset;
    }

    keyObject() {
      const { kty, crv, x, y, n, e } = this.#jwk;
      return createPublicKey({ key: { kty, crv, x, y, n, e }, format: "jwk" });
    }

    async sign(data) {
      const input = Buffer.isBuffer(data) ? data.toString("ascii") : String(data);
      const { signature } = await this.#custos.signJwsInput(this.#keyset, purposeOf(input), input);
      return Buffer.from(signature);
    }
  };
}

/** The keys of one keyset: every published version, the active one first. */
async function keysOf(custos, CustosSigningKey, keyset) {
  const ks = await custos.getKeyset(keyset);
  const active = ks.versions.find((v) => v.state === "active")?.kid;
  const jwks = await custos.jwks({ keyset });
  const keys = jwks.keys.filter((k) => k.use !== "enc");
  if (!keys.some((k) => k.kid === active)) {
    throw new Error(`keyset ${keyset} has no active version in its JWKS`);
  }
  keys.sort((a, b) => (b.kid === active) - (a.kid === active));
  return { active, keys: keys.map((k) => new CustosSigningKey(custos, keyset, k, k.kid === active)) };
}

/**
 * oidc-provider's `jwks` configuration from Custos keysets: `keyset` signs
 * ID tokens, JARM responses, introspection responses and UserInfo (its
 * active key first, so oidc-provider picks it), `accessTokenKeyset` (give it
 * another algorithm, e.g. PS256, so the two never compete) signs JWT access
 * tokens. Returns `{ jwks, accessToken: { alg, kid } }`, the latter for a
 * resource server's `jwt.sign` configuration.
 */
export async function oidcProviderKeys(custos, { ExternalSigningKey, keyset, accessTokenKeyset }) {
  const CustosSigningKey = custosSigningKeyClass(ExternalSigningKey);
  const main = await keysOf(custos, CustosSigningKey, keyset);
  const result = { jwks: { keys: [...main.keys] }, signingKid: main.active };
  if (accessTokenKeyset) {
    const at = await keysOf(custos, CustosSigningKey, accessTokenKeyset);
    result.jwks.keys.push(...at.keys);
    result.accessToken = { alg: at.keys[0].alg, kid: at.active };
  }
  return result;
}
