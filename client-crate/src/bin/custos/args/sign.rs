//! `custos sign ...`: the subcommand per token kind and its options.

use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub(crate) enum SignCmd {
    /// Sign a JSON object of claims as a compact JWS.
    Jwt(SignJwt),
    /// Sign an OpenID Connect ID token (c_hash, at_hash, s_hash computed by Custos).
    IdToken(SignIdToken),
    /// Sign a JARM authorization response.
    Jarm(SignJarm),
    /// Sign an RFC 9101 request object (typ oauth-authz-req+jwt).
    RequestObject(SignRequestObject),
    /// Sign a private_key_jwt client assertion (RFC 7523).
    ClientAssertion(SignClientAssertion),
    /// Sign an RFC 9068 access token (typ at+jwt), optionally bound.
    AccessToken(SignAccessToken),
    /// Sign an RFC 9701 token introspection response (typ token-introspection+jwt).
    Introspection(SignIntrospection),
    /// Sign a raw HTTP/1.1 request or response (RFC 9421); prints it with
    /// Content-Digest, Signature-Input and Signature added.
    Http(SignHttp),
}

#[derive(Debug, Args)]
pub(crate) struct SignIntrospection {
    /// Keyset name (purpose introspection).
    #[arg(long)]
    pub(crate) keyset: String,
    /// The client (resource server) that asked: the JWT's aud.
    #[arg(long)]
    pub(crate) audience: String,
    /// The RFC 7662 response JSON file; standard input when absent.
    #[arg(long)]
    pub(crate) response: Option<PathBuf>,
    /// Issuer, when the keyset has none configured.
    #[arg(long)]
    pub(crate) issuer: Option<String>,
    #[command(flatten)]
    pub(crate) encrypt: Encrypt,
}

#[derive(Debug, Args)]
pub(crate) struct SignHttp {
    /// Keyset name (purpose http_message).
    #[arg(long)]
    pub(crate) keyset: String,
    /// The raw HTTP/1.1 message file; standard input when absent.
    #[arg(long)]
    pub(crate) message: Option<PathBuf>,
    /// For a response: the (signed) request it answers, raw HTTP/1.1.
    #[arg(long)]
    pub(crate) request: Option<PathBuf>,
    /// Covered components, comma-separated (e.g. @method,@target-uri,authorization);
    /// FAPI 2.0's set when absent.
    #[arg(long, value_delimiter = ',')]
    pub(crate) components: Vec<String>,
    /// The tag (default fapi-2-request or fapi-2-response).
    #[arg(long)]
    pub(crate) tag: Option<String>,
    /// The signature label (default sig1).
    #[arg(long)]
    pub(crate) label: Option<String>,
    /// Content-Digest algorithm: sha-256 (default) or sha-512.
    #[arg(long, value_parser = ["sha-256", "sha-512"])]
    pub(crate) digest_algorithm: Option<String>,
    /// Scheme for the target URI of a request given in origin form.
    #[arg(long, default_value = "https")]
    pub(crate) scheme: String,
}

#[derive(Debug, Args)]
pub(crate) struct Encrypt {
    /// Encrypt the signed token to this public JWK (file): nested JWT.
    #[arg(long)]
    pub(crate) encrypt_to: Option<PathBuf>,
    /// Content encryption with --encrypt-to: A256GCM (default) or A128CBC-HS256.
    #[arg(long, requires = "encrypt_to")]
    pub(crate) enc: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct SignIdToken {
    /// Keyset name.
    #[arg(long)]
    pub(crate) keyset: String,
    /// Authorization code issued with the token (adds c_hash).
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) code: Option<String>,
    /// Access token issued with the token (adds at_hash).
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) access_token: Option<String>,
    /// The request's state (adds s_hash).
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) state: Option<String>,
    /// CIBA push mode: the auth_req_id (adds urn:openid:params:jwt:claim:auth_req_id).
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) auth_req_id: Option<String>,
    /// CIBA push mode: the refresh token (adds urn:openid:params:jwt:claim:rt_hash).
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) refresh_token: Option<String>,
    /// Claims JSON file (iss, sub, aud, exp); standard input when absent.
    #[arg(long)]
    pub(crate) claims: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) encrypt: Encrypt,
}

#[derive(Debug, Args)]
pub(crate) struct SignJarm {
    /// Keyset name.
    #[arg(long)]
    pub(crate) keyset: String,
    /// The client the response is for (aud).
    #[arg(long)]
    pub(crate) client_id: String,
    /// Lifetime in seconds (default and maximum 600).
    #[arg(long)]
    pub(crate) lifetime: Option<i64>,
    /// Response parameters JSON file ({code, state} or {error, ...}); standard input when absent.
    #[arg(long)]
    pub(crate) params: Option<PathBuf>,
    /// Issuer, when the keyset has none configured.
    #[arg(long)]
    pub(crate) issuer: Option<String>,
    #[command(flatten)]
    pub(crate) encrypt: Encrypt,
}

#[derive(Debug, Args)]
pub(crate) struct SignRequestObject {
    /// Keyset name (the client's key).
    #[arg(long)]
    pub(crate) keyset: String,
    /// Claims JSON file; standard input when absent.
    #[arg(long)]
    pub(crate) claims: Option<PathBuf>,
    /// Lifetime in seconds when the claims have no exp (default 300, at most 3600).
    #[arg(long)]
    pub(crate) lifetime: Option<i64>,
    /// authorization (RFC 9101, default) or ciba (CIBA signed authentication request).
    #[arg(long)]
    pub(crate) kind: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct SignClientAssertion {
    /// Keyset name (the client's key).
    #[arg(long)]
    pub(crate) keyset: String,
    /// The client id (iss and sub).
    #[arg(long)]
    pub(crate) client_id: String,
    /// The authorization server's issuer or token endpoint (aud).
    #[arg(long)]
    pub(crate) audience: String,
    /// Lifetime in seconds (default 60).
    #[arg(long)]
    pub(crate) lifetime: Option<i64>,
}

#[derive(Debug, Args)]
pub(crate) struct SignAccessToken {
    /// Keyset name.
    #[arg(long)]
    pub(crate) keyset: String,
    /// Bind to this client certificate (PEM or DER file): cnf.x5t#S256.
    #[arg(long, conflicts_with = "jkt")]
    pub(crate) cert: Option<PathBuf>,
    /// Bind to this DPoP key thumbprint: cnf.jkt.
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) jkt: Option<String>,
    /// Claims JSON file (iss, sub, aud, exp, client_id); standard input when absent.
    #[arg(long)]
    pub(crate) claims: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct SignJwt {
    /// Keyset name.
    #[arg(long)]
    pub(crate) keyset: String,
    /// Purpose the token serves.
    #[arg(long)]
    pub(crate) purpose: String,
    /// JOSE `typ` header.
    #[arg(long)]
    pub(crate) typ: Option<String>,
    /// File with the claims JSON; standard input when absent.
    #[arg(long)]
    pub(crate) claims: Option<PathBuf>,
}
