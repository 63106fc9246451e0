// A FAPI 2.0 authorization server on node-oidc-provider whose every JWS is
// signed by Custos: the process holds public keys only. What stays here:
// sessions, login and consent, the client registry. What Custos does: keys,
// signatures and the FAPI token rules (SignJwsInput checks every token
// oidc-provider builds before signing it).
//
// Run against a running custosd (its socket in CUSTOS_SOCKET; the caller
// needs `sign`, `jwks` and, to create the keysets on first start, `manage`):
//
//   CUSTOS_SOCKET=/run/custos/custos.sock npm start
//
// SIGHUP re-reads the keysets from Custos (after a rotation) and swaps in a
// provider built with them; sessions and grants live in its adapter (memory
// here), so a reload starts them afresh.
import http from "node:http";
import Provider, { ExternalSigningKey } from "oidc-provider";
import { Custos } from "@custos/client";
import { oidcProviderKeys } from "@custos/client/oidc-provider";

/** The keysets the AS signs with, created in Custos when missing. */
export const KEYSETS = {
  // ID tokens, JARM responses, introspection responses, UserInfo.
  sign: { name: "as-sign", alg: "ES256", purposes: ["id_token", "jarm", "introspection", "userinfo"] },
  // JWT access tokens: another algorithm, so oidc-provider never mixes them up.
  accessToken: { name: "as-at", alg: "PS256", purposes: ["access_token"] },
};

/** The resource server this AS issues access tokens for. */
export const RESOURCE = "https://rs.bank.example";

async function ensureKeysets(custos, issuer) {
  const have = new Set((await custos.listKeysets()).map((k) => k.name));
  for (const { name, alg, purposes } of Object.values(KEYSETS)) {
    if (!have.has(name)) await custos.createKeyset(name, alg, purposes, { issuer, profile: "fapi2" });
  }
}

function formBody(req) {
  return new Promise((resolve, reject) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (c) => {
      body += c;
      if (body.length > 16384) reject(new Error("form too large"));
    });
    req.on("end", () => resolve(new URLSearchParams(body)));
    req.on("error", reject);
  });
}

const page = (title, body) =>
  `<!doctype html><meta charset="utf-8"><title>${title}</title><h1>${title}</h1>${body}`;

/** A provider with the current keys of Custos's keysets. */
async function buildProvider(custos, { issuer, clients, accounts }) {
  const keys = await oidcProviderKeys(custos, {
    ExternalSigningKey,
    keyset: KEYSETS.sign.name,
    accessTokenKeyset: KEYSETS.accessToken.name,
  });
  const provider = new Provider(issuer, {
    jwks: keys.jwks,
    clients,
    clientAuthMethods: ["private_key_jwt"],
    cookies: { keys: [Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("hex")] },
    pkce: { required: () => true },
    scopes: ["openid", "accounts"],
    claims: { openid: ["sub"], email: ["email"] },
    findAccount: async (ctx, sub) =>
      accounts[sub] && { accountId: sub, claims: async () => ({ sub, ...accounts[sub] }) },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    features: {
      fapi: { enabled: true, profile: "2.0" },
      externalSigningSupport: { enabled: true, ack: "experimental-01" },
      pushedAuthorizationRequests: { enabled: true, requirePushedAuthorizationRequests: true },
      dPoP: { enabled: true },
      jwtResponseModes: { enabled: true },
      introspection: { enabled: true },
      jwtIntrospection: { enabled: true },
      jwtUserinfo: { enabled: true },
      devInteractions: { enabled: false },
      resourceIndicators: {
        enabled: true,
        // No resource asked for: an access token for the userinfo endpoint.
        defaultResource: () => undefined,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: "accounts",
          audience: RESOURCE,
          accessTokenFormat: "jwt",
          accessTokenTTL: 300,
          jwt: { sign: keys.accessToken },
        }),
      },
    },
    ttl: { IdToken: 300, AccessToken: 300, AuthorizationCode: 60, Session: 600, Interaction: 600, Grant: 600 },
  });
  return { provider, keys };
}

/**
 * Starts the AS on `port` (0: any) and resolves to
 * `{ url, reload(), close(), keys() }`. `clients`: oidc-provider client
 * metadata; `accounts`: sub → claims, for the scripted login form.
 */
export async function startAuthorizationServer({ custos, issuer, port = 0, clients, accounts }) {
  await ensureKeysets(custos, issuer);
  let current = await buildProvider(custos, { issuer, clients, accounts });

  // The login and consent pages. A real AS has its own; these take a
  // username from a form and grant what the client asked for.
  const interaction = async (req, res) => {
    const { provider } = current;
    const url = new URL(req.url, issuer);
    const details = await provider.interactionDetails(req, res);
    const { prompt, params, session } = details;
    if (req.method === "GET") {
      res.setHeader("content-type", "text/html");
      res.end(
        prompt.name === "login"
          ? page("Sign in", `<form method="post" action="${url.pathname}/login"><input name="login"><button>Sign in</button></form>`)
          : page("Consent", `<form method="post" action="${url.pathname}/confirm"><button>Allow ${params.scope}</button></form>`),
      );
      return;
    }
    let result;
    if (url.pathname.endsWith("/login")) {
      const login = (await formBody(req)).get("login");
      if (!accounts[login]) {
        res.statusCode = 403;
        res.end(page("Sign in", "unknown user"));
        return;
      }
      result = { login: { accountId: login } };
    } else if (url.pathname.endsWith("/confirm")) {
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
      // Grant what the client asked for and is still missing.
      const missing = prompt.details;
      if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(" "));
      if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
      for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
        grant.addResourceScope(indicator, scopes.join(" "));
      }
      result = { consent: { grantId: await grant.save() } };
    } else {
      res.statusCode = 404;
      res.end();
      return;
    }
    const location = await provider.interactionResult(req, res, result, { mergeWithLastSubmission: false });
    res.statusCode = 303;
    res.setHeader("location", location);
    res.end();
  };

  const server = http.createServer((req, res) => {
    if (req.url.startsWith("/interaction/")) {
      interaction(req, res).catch((e) => {
        res.statusCode = 400;
        res.end(String(e.message));
      });
      return;
    }
    current.provider.callback()(req, res);
  });
  await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    keys: () => current.keys,
    async reload() {
      current = await buildProvider(custos, { issuer, clients, accounts });
    },
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

// `npm start`: one client from CLIENT_JWKS (its public JWK Set, JSON) and
// one account, on PORT (default 3000).
if (import.meta.url === `file://${process.argv[1]}`) {
  const custos = Custos.connect({ socket: process.env.CUSTOS_SOCKET ?? "/run/custos/custos.sock" });
  const port = Number(process.env.PORT ?? 3000);
  const issuer = process.env.ISSUER ?? `http://127.0.0.1:${port}`;
  const clients = process.env.CLIENT_JWKS
    ? [{
        client_id: process.env.CLIENT_ID ?? "client-1",
        token_endpoint_auth_method: "private_key_jwt",
        token_endpoint_auth_signing_alg: "ES256",
        jwks: JSON.parse(process.env.CLIENT_JWKS),
        redirect_uris: [process.env.REDIRECT_URI ?? "https://client.example/cb"],
        response_types: ["code"],
        grant_types: ["authorization_code"],
        authorization_signed_response_alg: "ES256",
        id_token_signed_response_alg: "ES256",
        introspection_signed_response_alg: "ES256",
        userinfo_signed_response_alg: "ES256",
        dpop_bound_access_tokens: true,
      }]
    : [];
  const as = await startAuthorizationServer({ custos, issuer, port, clients, accounts: { alice: { email: "alice@bank.example" } } });
  process.on("SIGHUP", () => as.reload().then(() => console.log("keys reloaded from Custos")));
  console.log(`FAPI 2.0 authorization server at ${as.url}, signing through Custos`);
}
