//! `custos`: the command-line client for custosd.
//!
//! Exit codes: 0 success; 1 the daemon refused or failed the request (for
//! `verify`: the token is invalid); 2 usage error or the daemon could not be
//! reached (for `verify`: also a request the daemon could not check).

use clap::{Args, Parser, Subcommand};
use custos_client::{proto, Client, Error, KeysetSpec};
use serde_json::json;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

/// Command-line client for the Custos signing daemon.
#[derive(Debug, Parser)]
#[command(name = "custos", version)]
struct Cli {
    /// The daemon's Unix socket.
    #[arg(
        long,
        global = true,
        env = "CUSTOS_SOCKET",
        default_value = "/run/custos/custos.sock"
    )]
    socket: PathBuf,
    /// Connect over TCP with mutual TLS instead: https://HOST:PORT (needs --cert, --key, --ca).
    #[arg(long, requires_all = ["cert", "key", "ca"])]
    endpoint: Option<String>,
    /// Client certificate (PEM) for --endpoint.
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Client private key (PEM) for --endpoint.
    #[arg(long)]
    key: Option<PathBuf>,
    /// CA certificate (PEM) that issued the daemon's certificate, for --endpoint.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Print results as JSON: keysets, bench figures, doctor reports, and
    /// verdicts ({valid, reason, detail, keyset, kid, claims} on standard
    /// output, valid or not); exit codes stay the same.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create and inspect keysets.
    #[command(subcommand)]
    Keyset(KeysetCmd),
    /// Print the JWK Set (public keys only).
    /// Without options: the authorization server's published JWKS (its own
    /// keysets only; never client, HTTP-message or generic keys).
    Jwks {
        /// Only this keyset's keys (any keyset).
        #[arg(long, conflicts_with = "issuer")]
        keyset: Option<String>,
        /// Only the published keysets of this issuer (needed when there are several).
        #[arg(long)]
        issuer: Option<String>,
    },
    /// Sign tokens.
    #[command(subcommand)]
    Sign(SignCmd),
    /// Verify tokens: exit 0 and the claims when valid, exit 1 and the reason when not.
    #[command(subcommand)]
    Verify(VerifyCmd),
    /// Print the discovery metadata an authorization server should advertise for
    /// these keysets (all when none given): *_alg_values_supported and the jwks_uri content.
    Metadata {
        /// Keysets to describe.
        #[arg(long, value_delimiter = ',')]
        keyset: Vec<String>,
    },
    /// Measure the daemon under closed-loop load through its real socket.
    #[command(subcommand)]
    Bench(BenchCmd),
    /// Check that the PKCS#11 tokens of a daemon config do what their HSM
    /// profiles promise (runs `custosd doctor` on this machine, next to the
    /// token; needs the config and the PIN source, not the daemon).
    Doctor {
        /// The daemon's configuration file.
        #[arg(long, default_value = "/etc/custos/custos.toml")]
        config: PathBuf,
        /// Only this backend.
        #[arg(long)]
        backend: Option<String>,
    },
    /// Check audit logs offline (no daemon needed).
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Dual control: operations held back for other people's approval.
    #[command(subcommand)]
    Requests(RequestsCmd),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) of custos.
    Man,
    /// Decrypt a JWE encrypted to a request_object_decryption keyset; writes
    /// the plaintext byte for byte (no newline added).
    Decrypt {
        /// Keyset name.
        #[arg(long)]
        keyset: String,
        /// The compact JWE, or `-` (standard input) or `@FILE`.
        #[arg(long)]
        jwe: String,
        /// Write the plaintext to this file (created with mode 0600) instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum KeysetCmd {
    /// Create a keyset; its first key is generated inside the backend device.
    Create {
        /// Keyset name.
        name: String,
        /// The algorithm of its keys.
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(custos_proto::ALGORITHMS))]
        alg: String,
        /// Purposes, comma-separated (a keyset serves one owner: see the README's security model).
        #[arg(long, value_delimiter = ',', required = true,
              value_parser = clap::builder::PossibleValuesParser::new(custos_proto::PURPOSES))]
        purpose: Vec<String>,
        /// Backend name from the daemon's config.
        #[arg(long)]
        backend: Option<String>,
        /// FAPI profile (default fapi2).
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(custos_proto::PROFILES))]
        profile: Option<String>,
        /// Issuer (`iss`) every token of this keyset carries.
        #[arg(long)]
        issuer: Option<String>,
        /// Longest token lifetime in seconds (default 3600).
        #[arg(long)]
        max_lifetime: Option<i64>,
    },
    /// List keysets.
    List,
    /// Show one keyset, its versions and transitions, and the next scheduled one.
    Show {
        /// Keyset name.
        name: String,
    },
    /// Make a new key version: published ahead as pending, or active at once with --now.
    Rotate {
        /// Keyset name.
        name: String,
        /// Emergency rotation: the new key signs at once, the old one is retired.
        #[arg(long)]
        now: bool,
    },
    /// Promote a pending key early, or roll back to a retired one.
    Activate {
        /// Keyset name.
        name: String,
        /// The version's kid (base64url: may start with '-').
        #[arg(long, allow_hyphen_values = true)]
        kid: String,
    },
    /// Retire a pending key (stays published, never signs).
    Retire {
        /// Keyset name.
        name: String,
        /// The version's kid (base64url: may start with '-').
        #[arg(long, allow_hyphen_values = true)]
        kid: String,
    },
    /// Disable a key (compromised): out of the JWKS and refused by every verification at once.
    Disable {
        /// Keyset name.
        name: String,
        /// The version's kid (base64url: may start with '-').
        #[arg(long, allow_hyphen_values = true)]
        kid: String,
    },
    /// Destroy a key on the device (never the active one). Cannot be undone.
    Destroy {
        /// Keyset name.
        name: String,
        /// The version's kid (base64url: may start with '-').
        #[arg(long, allow_hyphen_values = true)]
        kid: String,
        /// Confirm the destruction.
        #[arg(long)]
        yes: bool,
    },
    /// Show or change the rotation policy (durations like 90d, 12h, 30s).
    Policy {
        /// Keyset name.
        name: String,
        /// Rotate when the active key is this old ("none" for manual only).
        #[arg(long)]
        rotation_period: Option<String>,
        /// Publish a new key this long before it signs.
        #[arg(long)]
        publish_ahead: Option<String>,
        /// Keep a retired key published this long (at least the max token lifetime).
        #[arg(long)]
        retain_for: Option<String>,
        /// Destroy expired retired keys instead of disabling them.
        #[arg(long)]
        auto_destroy: Option<bool>,
    },
    /// Make a PKCS#10 certificate request for a TLS keyset's active key, signed
    /// inside the device; prints the PEM (or writes --output) for the CA.
    Csr {
        /// Keyset name (purpose tls_client or tls_server).
        name: String,
        /// The subject, RFC 4514 (e.g. "CN=client-1,O=Bank,C=GB").
        #[arg(long)]
        subject: String,
        /// A subject alternative name: DNS:host, URI:https://..., IP:10.0.0.1 or email:a@b
        /// (repeat for more).
        #[arg(long = "san")]
        sans: Vec<String>,
        /// Write the CSR here instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
        /// A pending version's kid, to have its certificate issued before it
        /// signs (default: the active version).
        #[arg(long, allow_hyphen_values = true)]
        kid: Option<String>,
    },
    /// Store the certificate chain a CA issued for a TLS keyset's key (PEM, leaf first).
    SetCertificate {
        /// Keyset name.
        name: String,
        /// The PEM chain file; standard input when absent.
        chain: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum RequestsCmd {
    /// List requests (pending first is up to you: newest first).
    List,
    /// Show one request, with the digest an approval names.
    Show {
        /// Request id (r-...).
        id: String,
    },
    /// Approve a request you have looked at: --digest is the one `show` printed,
    /// so an approval never covers a request that changed.
    Approve {
        /// Request id.
        id: String,
        /// The request's digest, from `custos requests show ID`.
        #[arg(long)]
        digest: String,
    },
    /// Reject a request (the requester: withdraw it).
    Reject {
        /// Request id.
        id: String,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCmd {
    /// Check the hash chain of audit log files (oldest first, across
    /// rotations) and, with --jwks, every checkpoint's signature; names each
    /// edited, deleted, reordered or truncated line. Exit 0: intact and
    /// sealed; 1: broken (or lines not sealed by a checkpoint).
    Verify {
        /// The audit files, oldest first (e.g. audit.jsonl.1 audit.jsonl).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The audit keyset's JWKS (`custos jwks --keyset NAME`), to check the checkpoints.
        #[arg(long)]
        jwks: Option<PathBuf>,
        /// Lines after the last checkpoint are fine (a log custosd still writes).
        #[arg(long)]
        allow_unsealed: bool,
    },
}

#[derive(Debug, Subcommand)]
enum SignCmd {
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
struct SignIntrospection {
    /// Keyset name (purpose introspection).
    #[arg(long)]
    keyset: String,
    /// The client (resource server) that asked: the JWT's aud.
    #[arg(long)]
    audience: String,
    /// The RFC 7662 response JSON file; standard input when absent.
    #[arg(long)]
    response: Option<PathBuf>,
    /// Issuer, when the keyset has none configured.
    #[arg(long)]
    issuer: Option<String>,
    #[command(flatten)]
    encrypt: Encrypt,
}

#[derive(Debug, Args)]
struct SignHttp {
    /// Keyset name (purpose http_message).
    #[arg(long)]
    keyset: String,
    /// The raw HTTP/1.1 message file; standard input when absent.
    #[arg(long)]
    message: Option<PathBuf>,
    /// For a response: the (signed) request it answers, raw HTTP/1.1.
    #[arg(long)]
    request: Option<PathBuf>,
    /// Covered components, comma-separated (e.g. @method,@target-uri,authorization);
    /// FAPI 2.0's set when absent.
    #[arg(long, value_delimiter = ',')]
    components: Vec<String>,
    /// The tag (default fapi-2-request or fapi-2-response).
    #[arg(long)]
    tag: Option<String>,
    /// The signature label (default sig1).
    #[arg(long)]
    label: Option<String>,
    /// Content-Digest algorithm: sha-256 (default) or sha-512.
    #[arg(long, value_parser = ["sha-256", "sha-512"])]
    digest_algorithm: Option<String>,
    /// Scheme for the target URI of a request given in origin form.
    #[arg(long, default_value = "https")]
    scheme: String,
}

#[derive(Debug, Args)]
struct BenchOpts {
    /// Concurrent callers.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Connections the callers share (round robin).
    #[arg(long, default_value_t = 4)]
    connections: usize,
}

#[derive(Debug, Subcommand)]
enum BenchCmd {
    /// SignJwt (or SignJwtBatch with --batch) with a keyset's active key.
    Sign {
        /// Keyset name.
        #[arg(long)]
        keyset: String,
        /// Purpose (default: generic).
        #[arg(long, default_value = "generic")]
        purpose: String,
        /// Claim sets per call (SignJwtBatch when above 1).
        #[arg(long, default_value_t = 1)]
        batch: usize,
        #[command(flatten)]
        opts: BenchOpts,
    },
    /// The gRPC health check: the round trip of the socket and gRPC stack
    /// alone (no device, JOSE or audit), the floor under every other figure.
    Health {
        #[command(flatten)]
        opts: BenchOpts,
    },
    /// VerifyAccessToken of a certificate-bound token signed once by KEYSET (purpose access_token).
    Verify {
        /// Keyset name (needs purpose access_token).
        #[arg(long)]
        keyset: String,
        #[command(flatten)]
        opts: BenchOpts,
    },
}

#[derive(Debug, Subcommand)]
enum VerifyCmd {
    /// An access token from this keyring, with its certificate or DPoP binding.
    AccessToken {
        /// The access token.
        #[arg(long)]
        token: String,
        /// Expected issuer.
        #[arg(long)]
        issuer: Option<String>,
        /// Expected audience.
        #[arg(long)]
        audience: Option<String>,
        /// The client certificate (PEM or DER file) the TLS terminator saw.
        #[arg(long, conflicts_with = "dpop")]
        cert: Option<PathBuf>,
        /// The DPoP proof sent with the request.
        #[arg(long, requires_all = ["htm", "htu"])]
        dpop: Option<String>,
        /// The request's HTTP method (with --dpop).
        #[arg(long)]
        htm: Option<String>,
        /// The request's URL (with --dpop).
        #[arg(long)]
        htu: Option<String>,
        /// Accept an unbound (bearer) token when no binding is presented.
        #[arg(long)]
        allow_bearer: bool,
    },
    /// A compact JWS against a keyset or a JWKS file.
    Jws {
        /// The JWS.
        #[arg(long)]
        token: String,
        /// Verify with this keyset's keys.
        #[arg(long, conflicts_with = "jwks", required_unless_present = "jwks")]
        keyset: Option<String>,
        /// Verify with the keys in this JWKS file.
        #[arg(long)]
        jwks: Option<PathBuf>,
        /// Required typ header.
        #[arg(long)]
        typ: Option<String>,
    },
    /// A client's request object (AS side).
    RequestObject {
        /// The request object.
        #[arg(long)]
        token: String,
        /// The client's JWKS file.
        #[arg(long)]
        jwks: PathBuf,
        /// The client id.
        #[arg(long)]
        client_id: String,
        /// Our issuer (expected in aud).
        #[arg(long)]
        issuer: String,
        /// authorization (RFC 9101, default) or ciba (signed authentication request).
        #[arg(long)]
        kind: Option<String>,
    },
    /// An HTTP message signature (RFC 9421) on a raw HTTP/1.1 message.
    Http {
        /// The raw HTTP/1.1 message file.
        #[arg(long)]
        message: PathBuf,
        /// Verify with this keyset's keys.
        #[arg(long, conflicts_with = "jwks", required_unless_present = "jwks")]
        keyset: Option<String>,
        /// Verify with the keys in this JWKS file.
        #[arg(long)]
        jwks: Option<PathBuf>,
        /// For a response: the request it answers.
        #[arg(long)]
        request: Option<PathBuf>,
        /// Oldest acceptable created, in seconds (default 300).
        #[arg(long)]
        max_age: Option<i64>,
        /// Components that must be covered, comma-separated; FAPI 2.0's set when absent.
        #[arg(long, value_delimiter = ',')]
        require: Vec<String>,
        /// Required tag.
        #[arg(long)]
        tag: Option<String>,
        /// Scheme for the target URI of a request given in origin form.
        #[arg(long, default_value = "https")]
        scheme: String,
        /// The signature label to verify (default: the one whose tag matches).
        #[arg(long)]
        label: Option<String>,
    },
    /// A client's private_key_jwt assertion (AS side); a reused jti is refused.
    ClientAssertion {
        /// The assertion.
        #[arg(long)]
        token: String,
        /// The client's JWKS file.
        #[arg(long)]
        jwks: PathBuf,
        /// The client id.
        #[arg(long)]
        client_id: String,
        /// Accepted audiences (repeat or comma-separate).
        #[arg(long, value_delimiter = ',', required = true)]
        audience: Vec<String>,
    },
}

#[derive(Debug, Args)]
struct Encrypt {
    /// Encrypt the signed token to this public JWK (file): nested JWT.
    #[arg(long)]
    encrypt_to: Option<PathBuf>,
    /// Content encryption with --encrypt-to: A256GCM (default) or A128CBC-HS256.
    #[arg(long, requires = "encrypt_to")]
    enc: Option<String>,
}

#[derive(Debug, Args)]
struct SignIdToken {
    /// Keyset name.
    #[arg(long)]
    keyset: String,
    /// Authorization code issued with the token (adds c_hash).
    #[arg(long, allow_hyphen_values = true)]
    code: Option<String>,
    /// Access token issued with the token (adds at_hash).
    #[arg(long, allow_hyphen_values = true)]
    access_token: Option<String>,
    /// The request's state (adds s_hash).
    #[arg(long, allow_hyphen_values = true)]
    state: Option<String>,
    /// CIBA push mode: the auth_req_id (adds urn:openid:params:jwt:claim:auth_req_id).
    #[arg(long, allow_hyphen_values = true)]
    auth_req_id: Option<String>,
    /// CIBA push mode: the refresh token (adds urn:openid:params:jwt:claim:rt_hash).
    #[arg(long, allow_hyphen_values = true)]
    refresh_token: Option<String>,
    /// Claims JSON file (iss, sub, aud, exp); standard input when absent.
    #[arg(long)]
    claims: Option<PathBuf>,
    #[command(flatten)]
    encrypt: Encrypt,
}

#[derive(Debug, Args)]
struct SignJarm {
    /// Keyset name.
    #[arg(long)]
    keyset: String,
    /// The client the response is for (aud).
    #[arg(long)]
    client_id: String,
    /// Lifetime in seconds (default and maximum 600).
    #[arg(long)]
    lifetime: Option<i64>,
    /// Response parameters JSON file ({code, state} or {error, ...}); standard input when absent.
    #[arg(long)]
    params: Option<PathBuf>,
    /// Issuer, when the keyset has none configured.
    #[arg(long)]
    issuer: Option<String>,
    #[command(flatten)]
    encrypt: Encrypt,
}

#[derive(Debug, Args)]
struct SignRequestObject {
    /// Keyset name (the client's key).
    #[arg(long)]
    keyset: String,
    /// Claims JSON file; standard input when absent.
    #[arg(long)]
    claims: Option<PathBuf>,
    /// Lifetime in seconds when the claims have no exp (default 300, at most 3600).
    #[arg(long)]
    lifetime: Option<i64>,
    /// authorization (RFC 9101, default) or ciba (CIBA signed authentication request).
    #[arg(long)]
    kind: Option<String>,
}

#[derive(Debug, Args)]
struct SignClientAssertion {
    /// Keyset name (the client's key).
    #[arg(long)]
    keyset: String,
    /// The client id (iss and sub).
    #[arg(long)]
    client_id: String,
    /// The authorization server's issuer or token endpoint (aud).
    #[arg(long)]
    audience: String,
    /// Lifetime in seconds (default 60).
    #[arg(long)]
    lifetime: Option<i64>,
}

#[derive(Debug, Args)]
struct SignAccessToken {
    /// Keyset name.
    #[arg(long)]
    keyset: String,
    /// Bind to this client certificate (PEM or DER file): cnf.x5t#S256.
    #[arg(long, conflicts_with = "jkt")]
    cert: Option<PathBuf>,
    /// Bind to this DPoP key thumbprint: cnf.jkt.
    #[arg(long, allow_hyphen_values = true)]
    jkt: Option<String>,
    /// Claims JSON file (iss, sub, aud, exp, client_id); standard input when absent.
    #[arg(long)]
    claims: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct SignJwt {
    /// Keyset name.
    #[arg(long)]
    keyset: String,
    /// Purpose the token serves.
    #[arg(long)]
    purpose: String,
    /// JOSE `typ` header.
    #[arg(long)]
    typ: Option<String>,
    /// File with the claims JSON; standard input when absent.
    #[arg(long)]
    claims: Option<PathBuf>,
}

/// A failure and its exit code.
struct Failure {
    code: u8,
    message: String,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        // Held back by dual control: not refused, waiting (exit 3).
        if let Some(id) = e
            .status()
            .and_then(|s| s.metadata().get("custos-request-id"))
            .and_then(|v| v.to_str().ok())
        {
            return Failure {
                code: 3,
                message: format!(
                    "waiting for approval as request {id}: {}",
                    e.status().map(|s| s.message()).unwrap_or_default()
                ),
            };
        }
        let code = if e.status().is_some() { 1 } else { 2 };
        Failure {
            code,
            message: e.to_string(),
        }
    }
}

fn usage(message: String) -> Failure {
    Failure { code: 2, message }
}

fn request_json(r: &proto::PendingRequest) -> serde_json::Value {
    json!({
        "id": r.id, "state": r.state, "operation": r.operation, "keyset": r.keyset,
        "kid": (!r.kid.is_empty()).then_some(&r.kid),
        "parameters": serde_json::from_str::<serde_json::Value>(&r.operation_json).unwrap_or_default(),
        "requested_by": r.requested_by, "requested_at": r.requested_at, "expires_at": r.expires_at,
        "needed": r.needed,
        "approvals": r.approvals.iter().map(|a| json!({"by": a.by, "at": a.at})).collect::<Vec<_>>(),
        "outcome": (!r.outcome.is_empty()).then_some(&r.outcome),
        "digest": r.digest,
    })
}

/// `custos audit verify`: reads the files and the JWKS, prints the report.
fn audit_verify(
    files: &[PathBuf],
    jwks: Option<&PathBuf>,
    allow_unsealed: bool,
    as_json: bool,
) -> Result<(), Failure> {
    let texts = files
        .iter()
        .map(|f| {
            std::fs::read_to_string(f)
                .map(|t| (f.display().to_string(), t))
                .map_err(|e| usage(format!("cannot read {}: {e}", f.display())))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let jwks = jwks
        .map(|p| {
            std::fs::read_to_string(p)
                .map_err(|e| usage(format!("cannot read {}: {e}", p.display())))
                .and_then(|t| {
                    serde_json::from_str::<serde_json::Value>(&t)
                        .map_err(|e| usage(format!("{} is not a JWKS: {e}", p.display())))
                })
        })
        .transpose()?;
    let r = custos_client::audit::verify(&texts, jwks.as_ref());
    let intact = r.intact(allow_unsealed);
    if as_json {
        print_json(&json!({"intact": intact, "report": r}));
    } else {
        for p in &r.problems {
            println!("BROKEN {p}");
        }
        let seqs = match (r.first_seq, r.last_seq) {
            (Some(a), Some(b)) => format!("seq {a}..{b}"),
            _ => "no chained lines".into(),
        };
        println!(
            "{} lines ({seqs}); {} checkpoints verified",
            r.lines, r.checkpoints_verified
        );
        if r.checkpoints_unchecked > 0 {
            println!(
                "{} checkpoints not checked: give --jwks (custos jwks --keyset AUDIT_KEYSET)",
                r.checkpoints_unchecked
            );
        }
        match r.sealed_through {
            Some(s) => println!("sealed through seq {s}"),
            None => println!("nothing is sealed by a verified checkpoint"),
        }
        if r.unsealed > 0 {
            println!(
                "{} lines after the last verified checkpoint are not yet sealed",
                r.unsealed
            );
        }
        println!("{}", if intact { "=> INTACT" } else { "=> NOT INTACT" });
    }
    if intact {
        Ok(())
    } else {
        Err(Failure {
            code: 1,
            message: "the audit log is not intact (see above)".into(),
        })
    }
}

fn keyset_json(ks: &proto::Keyset) -> serde_json::Value {
    json!({
        "name": ks.name,
        "alg": ks.alg,
        "purposes": ks.purposes,
        "backend": ks.backend,
        "backend_problem": (!ks.backend_problem.is_empty()).then_some(&ks.backend_problem),
        "profile": ks.profile,
        "created_at": ks.created_at,
        "issuer": ks.issuer,
        "max_token_lifetime": ks.max_token_lifetime,
        "policy": ks.policy.as_ref().map(|p| json!({
            "rotation_period": (p.rotation_period != 0).then_some(p.rotation_period),
            "publish_ahead": p.publish_ahead,
            "retain_for": p.retain_for,
            "auto_destroy": p.auto_destroy,
        })),
        "next_transition": ks.next_transition.as_ref().map(|t| json!({
            "at": t.at, "action": t.action, "kid": (!t.kid.is_empty()).then_some(&t.kid),
        })),
        "versions": ks.versions.iter().map(|v| json!({
            "kid": v.kid, "state": v.state, "created_at": v.created_at,
            "x5t#S256": (!v.x5t_s256.is_empty()).then_some(&v.x5t_s256),
            "transitions": v.transitions.iter().map(|t| json!({
                "from": (!t.from.is_empty()).then_some(&t.from), "to": t.to, "at": t.at, "by": t.by,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// A keyset after a change: one line for a person, the keyset with `--json`.
fn changed(json: bool, ks: &proto::Keyset, line: &str) {
    if json {
        print_json(&keyset_json(ks));
    } else {
        println!("{line}");
    }
}

/// A signed token: the compact token alone, or with `--json` `{token, kid, encrypted}`.
fn print_signed(json: bool, t: &proto::SignedToken) {
    if json {
        print_json(&json!({"token": t.token, "kid": t.kid, "encrypted": t.encrypted}));
    } else {
        println!("{}", t.token);
    }
}

fn print_json(v: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

fn active_kid(ks: &proto::Keyset) -> &str {
    ks.versions
        .iter()
        .find(|v| v.state == "active")
        .map_or("-", |v| v.kid.as_str())
}

/// Runs `custosd doctor` (found next to this binary, else on PATH) and
/// passes its output and exit code through.
fn doctor(config: &PathBuf, backend: Option<&str>, json: bool) -> Result<(), Failure> {
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("custosd")))
        .filter(|p| p.exists());
    let program = sibling.unwrap_or_else(|| PathBuf::from("custosd"));
    let mut cmd = std::process::Command::new(&program);
    cmd.arg("doctor").arg("--config").arg(config);
    if let Some(b) = backend {
        cmd.arg("--backend").arg(b);
    }
    if json {
        cmd.arg("--json");
    }
    let status = cmd.status().map_err(|e| {
        usage(format!(
            "cannot run {} (custos doctor needs custosd installed beside it or on PATH): {e}",
            program.display()
        ))
    })?;
    match status.code() {
        Some(0) => Ok(()),
        Some(1) => Err(Failure {
            code: 1,
            message: "the token does not do everything its profile promises (see above)".into(),
        }),
        _ => Err(usage(
            "custosd doctor could not check the token (see above)".into(),
        )),
    }
}

/// Where the daemon is: the connection options of the command line.
#[derive(Debug, Clone)]
struct Target {
    socket: PathBuf,
    endpoint: Option<String>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
}

/// One connection to the daemon, over the Unix socket or mutual TLS.
async fn connect(cli: &Target) -> Result<Client, Failure> {
    Ok(match &cli.endpoint {
        Some(url) => {
            let read = |p: &Option<PathBuf>| -> Result<Vec<u8>, Failure> {
                let p = p
                    .as_ref()
                    .ok_or_else(|| usage("--endpoint needs --cert, --key and --ca".into()))?;
                std::fs::read(p).map_err(|e| usage(format!("cannot read {}: {e}", p.display())))
            };
            Client::connect_tls(url, &read(&cli.cert)?, &read(&cli.key)?, &read(&cli.ca)?).await?
        }
        None => Client::connect_unix(&cli.socket).await?,
    })
}

async fn run(cli: Cli) -> Result<(), Failure> {
    if let Command::Doctor { config, backend } = &cli.command {
        return doctor(config, backend.as_deref(), cli.json);
    }
    if let Command::Audit(AuditCmd::Verify {
        files,
        jwks,
        allow_unsealed,
    }) = &cli.command
    {
        return audit_verify(files, jwks.as_ref(), *allow_unsealed, cli.json);
    }
    if let Command::Completions { shell } = &cli.command {
        use clap::CommandFactory;
        clap_complete::generate(
            *shell,
            &mut Cli::command(),
            "custos",
            &mut std::io::stdout(),
        );
        return Ok(());
    }
    if let Command::Man = &cli.command {
        use clap::CommandFactory;
        return clap_mangen::Man::new(Cli::command())
            .render(&mut std::io::stdout())
            .map_err(|e| usage(format!("cannot write the man page: {e}")));
    }
    let target = Target {
        socket: cli.socket.clone(),
        endpoint: cli.endpoint.clone(),
        cert: cli.cert.clone(),
        key: cli.key.clone(),
        ca: cli.ca.clone(),
    };
    let client = connect(&target).await?;
    match cli.command {
        Command::Keyset(KeysetCmd::Create {
            name,
            alg,
            purpose,
            backend,
            profile,
            issuer,
            max_lifetime,
        }) => {
            let ks = client
                .create_keyset(KeysetSpec {
                    name,
                    alg,
                    purposes: purpose,
                    backend,
                    profile,
                    issuer,
                    max_token_lifetime: max_lifetime,
                })
                .await?;
            if cli.json {
                print_json(&keyset_json(&ks));
            } else {
                println!(
                    "created keyset {} ({}), kid {}",
                    ks.name,
                    ks.alg,
                    active_kid(&ks)
                );
            }
        }
        Command::Keyset(KeysetCmd::List) => {
            let list = client.list_keysets().await?;
            if cli.json {
                print_json(&serde_json::Value::Array(
                    list.iter().map(keyset_json).collect(),
                ));
            } else {
                println!(
                    "{:<24} {:<6} {:<10} {:<32} ACTIVE KID",
                    "NAME", "ALG", "BACKEND", "PURPOSES"
                );
                for ks in &list {
                    println!(
                        "{:<24} {:<6} {:<10} {:<32} {}",
                        ks.name,
                        ks.alg,
                        ks.backend,
                        ks.purposes.join(","),
                        active_kid(ks)
                    );
                }
            }
        }
        Command::Keyset(KeysetCmd::Show { name }) => {
            let ks = client.get_keyset(&name).await?;
            if cli.json {
                print_json(&keyset_json(&ks));
            } else {
                println!("keyset   {}", ks.name);
                println!("alg      {}", ks.alg);
                println!("profile  {}", ks.profile);
                if ks.backend_problem.is_empty() {
                    println!("backend  {} (answering)", ks.backend);
                } else {
                    println!(
                        "backend  {} NOT ANSWERING: {}",
                        ks.backend, ks.backend_problem
                    );
                }
                println!("purposes {}", ks.purposes.join(", "));
                if let Some(p) = &ks.policy {
                    let period = if p.rotation_period == 0 {
                        "manual".to_string()
                    } else {
                        format!("{}s", p.rotation_period)
                    };
                    println!(
                        "policy   rotation {period}, publish ahead {}s, retain {}s, auto-destroy {}",
                        p.publish_ahead, p.retain_for, p.auto_destroy
                    );
                }
                if let Some(t) = &ks.next_transition {
                    println!("next     {} {} at {}", t.action, t.kid, t.at);
                }
                for v in &ks.versions {
                    println!("  {} {:<9} created {}", v.kid, v.state, v.created_at);
                    if !v.x5t_s256.is_empty() {
                        println!("    certificate x5t#S256 {}", v.x5t_s256);
                    }
                }
            }
        }
        Command::Keyset(KeysetCmd::Rotate { name, now }) => {
            let ks = client.rotate(&name, now).await?;
            let newest = ks.versions.last().map_or("-", |v| v.kid.as_str());
            let state = ks.versions.last().map_or("-", |v| v.state.as_str());
            changed(
                cli.json,
                &ks,
                &format!("{name}: new key {newest} is {state}"),
            );
        }
        Command::Keyset(KeysetCmd::Activate { name, kid }) => {
            let ks = client.activate(&name, &kid).await?;
            changed(cli.json, &ks, &format!("{name}: {kid} is active"));
        }
        Command::Keyset(KeysetCmd::Retire { name, kid }) => {
            let ks = client.retire(&name, &kid).await?;
            changed(cli.json, &ks, &format!("{name}: {kid} is retired"));
        }
        Command::Keyset(KeysetCmd::Disable { name, kid }) => {
            let ks = client.disable(&name, &kid).await?;
            changed(cli.json, &ks, &format!("{name}: {kid} is disabled"));
        }
        Command::Keyset(KeysetCmd::Destroy { name, kid, yes }) => {
            if !yes {
                return Err(usage(format!(
                    "destroying {kid} cannot be undone; add --yes to confirm"
                )));
            }
            let ks = client.destroy(&name, &kid, true).await?;
            changed(cli.json, &ks, &format!("{name}: {kid} is destroyed"));
        }
        Command::Keyset(KeysetCmd::Policy {
            name,
            rotation_period,
            publish_ahead,
            retain_for,
            auto_destroy,
        }) => {
            let ks = client
                .set_policy(proto::SetPolicyRequest {
                    name,
                    rotation_period,
                    publish_ahead,
                    retain_for,
                    auto_destroy,
                })
                .await?;
            print_json(&keyset_json(&ks)["policy"]);
        }
        Command::Keyset(KeysetCmd::Csr {
            name,
            subject,
            sans,
            output,
            kid,
        }) => {
            let csr = client
                .create_certificate_request(&name, kid.as_deref(), &subject, &sans)
                .await?;
            if let Some(path) = &output {
                std::fs::write(path, &csr.csr_pem)
                    .map_err(|e| usage(format!("cannot write {}: {e}", path.display())))?;
            }
            if cli.json {
                print_json(&json!({"keyset": name, "kid": csr.kid, "csr_pem": csr.csr_pem}));
            } else if output.is_none() {
                print!("{}", csr.csr_pem);
            } else {
                eprintln!("{name}: certificate request for {} written", csr.kid);
            }
        }
        Command::Keyset(KeysetCmd::SetCertificate { name, chain }) => {
            let pem = read_input(chain.as_ref())?;
            let ks = client.set_certificate(&name, &pem).await?;
            let v = ks
                .versions
                .iter()
                .find(|v| !v.x5t_s256.is_empty() && pem_has_leaf(&pem, v));
            let what = v.map_or_else(String::new, |v| {
                format!("certificate for {} stored (x5t#S256 {})", v.kid, v.x5t_s256)
            });
            changed(cli.json, &ks, &format!("{name}: {what}"));
        }
        Command::Jwks { keyset, issuer } => {
            let text = match (&keyset, &issuer) {
                (None, Some(i)) => client.issuer_jwks(i).await?,
                _ => client.jwks(keyset.as_deref()).await?,
            };
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| usage(format!("daemon sent invalid JWKS JSON: {e}")))?;
            print_json(&v);
        }
        Command::Sign(SignCmd::Jwt(a)) => {
            let claims = read_input(a.claims.as_ref())?;
            let signed = client
                .sign_jwt(&a.keyset, &a.purpose, a.typ.as_deref(), &claims)
                .await?;
            if cli.json {
                print_json(&json!({"token": signed.jws, "kid": signed.kid}));
            } else {
                println!("{}", signed.jws);
            }
        }
        Command::Sign(SignCmd::IdToken(a)) => {
            let req = proto::SignIdTokenRequest {
                keyset: a.keyset,
                claims_json: read_input(a.claims.as_ref())?,
                code: a.code.unwrap_or_default(),
                access_token: a.access_token.unwrap_or_default(),
                state: a.state.unwrap_or_default(),
                encrypt_to: encryption(&a.encrypt)?,
                auth_req_id: a.auth_req_id.unwrap_or_default(),
                refresh_token: a.refresh_token.unwrap_or_default(),
            };
            print_signed(cli.json, &client.sign_id_token(req).await?);
        }
        Command::Sign(SignCmd::Jarm(a)) => {
            let req = proto::SignJarmResponseRequest {
                keyset: a.keyset,
                client_id: a.client_id,
                lifetime_seconds: a.lifetime.unwrap_or_default(),
                params_json: read_input(a.params.as_ref())?,
                issuer: a.issuer.unwrap_or_default(),
                encrypt_to: encryption(&a.encrypt)?,
            };
            print_signed(cli.json, &client.sign_jarm_response(req).await?);
        }
        Command::Sign(SignCmd::RequestObject(a)) => {
            let req = proto::SignRequestObjectRequest {
                keyset: a.keyset,
                claims_json: read_input(a.claims.as_ref())?,
                lifetime_seconds: a.lifetime.unwrap_or_default(),
                kind: a.kind.unwrap_or_default(),
            };
            print_signed(cli.json, &client.sign_request_object(req).await?);
        }
        Command::Sign(SignCmd::Introspection(a)) => {
            let req = proto::SignIntrospectionResponseRequest {
                keyset: a.keyset,
                audience: a.audience,
                response_json: read_input(a.response.as_ref())?,
                issuer: a.issuer.unwrap_or_default(),
                encrypt_to: encryption(&a.encrypt)?,
            };
            print_signed(cli.json, &client.sign_introspection_response(req).await?);
        }
        Command::Sign(SignCmd::Http(a)) => {
            let raw = http_message(a.message.as_ref())?;
            let request = match &a.request {
                Some(p) => Some(
                    http_message(Some(p))?
                        .to_proto(&a.scheme)
                        .map_err(|e| usage(format!("{}: {e}", p.display())))?,
                ),
                None => None,
            };
            let signed = client
                .sign_http_message(proto::SignHttpMessageRequest {
                    keyset: a.keyset,
                    message: Some(raw.to_proto(&a.scheme).map_err(usage)?),
                    request,
                    components: a.components,
                    tag: a.tag.unwrap_or_default(),
                    label: a.label.unwrap_or_default(),
                    digest_algorithm: a.digest_algorithm.clone().unwrap_or_default(),
                })
                .await?;
            if cli.json {
                print_json(&json!({
                    "signature_input": signed.signature_input,
                    "signature": signed.signature,
                    "content_digest": (!signed.content_digest.is_empty()).then_some(&signed.content_digest),
                    "label": signed.label,
                    "kid": signed.kid,
                    "alg": signed.alg,
                }));
                return Ok(());
            }
            let mut extra = Vec::new();
            if !signed.content_digest.is_empty() {
                extra.push(("Content-Digest", signed.content_digest.as_str()));
            }
            extra.push(("Signature-Input", signed.signature_input.as_str()));
            extra.push(("Signature", signed.signature.as_str()));
            use std::io::Write;
            std::io::stdout()
                .write_all(&raw.render(&extra))
                .map_err(|e| usage(format!("cannot write the message: {e}")))?;
        }
        Command::Sign(SignCmd::ClientAssertion(a)) => {
            let req = proto::SignClientAssertionRequest {
                keyset: a.keyset,
                client_id: a.client_id,
                audience: a.audience,
                lifetime_seconds: a.lifetime.unwrap_or_default(),
            };
            print_signed(cli.json, &client.sign_client_assertion(req).await?);
        }
        Command::Sign(SignCmd::AccessToken(a)) => {
            use proto::sign_access_token_request::Binding;
            let binding = match (a.cert, a.jkt) {
                (Some(path), _) => Some(Binding::ClientCertificate(
                    std::fs::read(&path)
                        .map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?,
                )),
                (None, Some(jkt)) => Some(Binding::Jkt(jkt)),
                (None, None) => None,
            };
            let req = proto::SignAccessTokenRequest {
                keyset: a.keyset,
                claims_json: read_input(a.claims.as_ref())?,
                binding,
            };
            print_signed(cli.json, &client.sign_access_token(req).await?);
        }
        Command::Verify(cmd) => {
            let verdict = verify(&client, cmd).await.map_err(|e| match e {
                // A request the daemon could not check is a usage problem here.
                Failure { code: 1, message } => Failure { code: 2, message },
                other => other,
            })?;
            if cli.json {
                let claims: Option<serde_json::Value> =
                    serde_json::from_str(&verdict.claims_json).ok();
                print_json(&json!({
                    "valid": verdict.valid,
                    "reason": (!verdict.reason.is_empty()).then_some(&verdict.reason),
                    "detail": (!verdict.detail.is_empty()).then_some(&verdict.detail),
                    "keyset": (!verdict.keyset.is_empty()).then_some(&verdict.keyset),
                    "kid": (!verdict.kid.is_empty()).then_some(&verdict.kid),
                    "claims": claims,
                }));
                return if verdict.valid {
                    Ok(())
                } else {
                    Err(Failure {
                        code: 1,
                        message: String::new(),
                    })
                };
            }
            if !verdict.valid {
                return Err(Failure {
                    code: 1,
                    message: format!("invalid: {}: {}", verdict.reason, verdict.detail),
                });
            }
            let claims: serde_json::Value = serde_json::from_str(&verdict.claims_json)
                .map_err(|e| usage(format!("daemon sent invalid claims JSON: {e}")))?;
            print_json(&claims);
        }
        // Handled before connecting; kept total without a panic.
        Command::Doctor { config, backend } => doctor(&config, backend.as_deref(), cli.json)?,
        Command::Completions { .. } | Command::Man | Command::Audit(_) => {}
        Command::Requests(RequestsCmd::List) => {
            let all = client.list_requests().await?;
            if cli.json {
                print_json(&json!(all.iter().map(request_json).collect::<Vec<_>>()));
            } else if all.is_empty() {
                println!("no requests");
            } else {
                for r in &all {
                    println!(
                        "{}  {:<8} {:<10} {} {}  by {}  {}/{} approvals",
                        r.id,
                        r.state,
                        r.operation,
                        r.keyset,
                        r.kid,
                        r.requested_by,
                        r.approvals.len(),
                        r.needed
                    );
                }
            }
        }
        Command::Requests(RequestsCmd::Show { id }) => {
            let r = client.get_request(&id).await?;
            print_json(&request_json(&r));
        }
        Command::Requests(RequestsCmd::Approve { id, digest }) => {
            let r = client.approve_request(&id, &digest).await?;
            if cli.json {
                print_json(&request_json(&r));
            } else if r.state == "pending" {
                println!(
                    "{id}: approved ({} of {} approvals)",
                    r.approvals.len(),
                    r.needed
                );
            } else {
                println!("{id}: {} ({})", r.state, r.outcome);
            }
            if r.state == "failed" {
                return Err(Failure {
                    code: 1,
                    message: format!("{id}: {}", r.outcome),
                });
            }
        }
        Command::Requests(RequestsCmd::Reject { id, reason }) => {
            let r = client.reject_request(&id, &reason).await?;
            if cli.json {
                print_json(&request_json(&r));
            } else {
                println!("{id}: rejected");
            }
        }
        Command::Metadata { keyset } => {
            let all = client.list_keysets().await?;
            let chosen: Vec<&proto::Keyset> = all
                .iter()
                // Without names: the issuer's published keysets only.
                .filter(|k| {
                    if keyset.is_empty() {
                        k.published
                    } else {
                        keyset.contains(&k.name)
                    }
                })
                .collect();
            if let Some(missing) = keyset.iter().find(|n| !all.iter().any(|k| &k.name == *n)) {
                return Err(Failure {
                    code: 1,
                    message: format!("NotFound: no keyset named {missing:?}"),
                });
            }
            print_json(&metadata(&client, &chosen).await?);
        }
        Command::Bench(cmd) => {
            use custos_client::bench::{self, Load};
            let (load, opts) = match cmd {
                BenchCmd::Sign {
                    keyset,
                    purpose,
                    batch,
                    opts,
                } => (
                    Load::Sign {
                        keyset,
                        purpose,
                        batch,
                    },
                    opts,
                ),
                BenchCmd::Health { opts } => (Load::Health, opts),
                BenchCmd::Verify { keyset, opts } => {
                    let claims = json!({
                        "iss": "https://as.bank.example", "sub": "bench", "aud": "https://rs.bank.example",
                        "client_id": "bench-client", "exp": now_secs() + 3000,
                    });
                    let token = client
                        .sign_access_token(proto::SignAccessTokenRequest {
                            keyset,
                            claims_json: claims.to_string(),
                            binding: Some(
                                proto::sign_access_token_request::Binding::ClientCertificate(
                                    bench::BENCH_CERT_PEM.as_bytes().to_vec(),
                                ),
                            ),
                        })
                        .await?
                        .token;
                    (Load::Verify { token }, opts)
                }
            };
            // Several connections, as several authorization-server
            // instances (or one with a connection pool) would open.
            let mut clients = vec![client.clone()];
            for _ in 1..opts.connections.max(1) {
                clients.push(connect(&target).await?);
            }
            let r = bench::run(
                &clients,
                load,
                opts.concurrency,
                std::time::Duration::from_secs(opts.duration),
            )
            .await;
            if cli.json {
                println!("{}", serde_json::to_string(&r).unwrap_or_default());
            } else {
                println!(
                    "{:.0} ops/s  p50 {} µs  p99 {} µs  p999 {} µs  errors {}  ({} ops, concurrency {}, batch {}, {:.1} s)",
                    r.ops_per_sec, r.p50_us, r.p99_us, r.p999_us, r.errors, r.ops, r.concurrency, r.batch, r.duration_s
                );
            }
            if r.ops == 0 {
                return Err(Failure {
                    code: 1,
                    message: format!("no successful calls ({} errors)", r.errors),
                });
            }
        }
        Command::Decrypt {
            keyset,
            jwe,
            output,
        } => {
            let out = client.decrypt_jwe(&keyset, &secret_input(jwe)?).await?;
            use std::io::Write;
            match output {
                Some(path) => {
                    use std::os::unix::fs::OpenOptionsExt;
                    std::fs::OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .mode(0o600)
                        .open(&path)
                        .and_then(|mut f| f.write_all(&out.plaintext))
                        .map_err(|e| usage(format!("cannot write {}: {e}", path.display())))?;
                }
                None => {
                    let mut stdout = std::io::stdout();
                    stdout
                        .write_all(&out.plaintext)
                        .and_then(|()| stdout.flush())
                        .map_err(|e| usage(format!("cannot write the plaintext: {e}")))?;
                }
            }
        }
    }
    Ok(())
}

/// Discovery metadata (OpenID Connect Discovery, RFC 8414, JARM, RFC 9101,
/// RFC 9701) for what these keysets will actually do.
async fn metadata(
    client: &Client,
    keysets: &[&proto::Keyset],
) -> Result<serde_json::Value, Failure> {
    let mut out = serde_json::Map::new();
    let mut add = |field: &str, value: &str| {
        if let Some(list) = out
            .entry(field.to_string())
            .or_insert_with(|| json!([]))
            .as_array_mut()
        {
            if !list.iter().any(|v| v == value) {
                list.push(json!(value));
            }
        }
    };
    for ks in keysets {
        for p in &ks.purposes {
            let field = match p.as_str() {
                "id_token" => "id_token_signing_alg_values_supported",
                "jarm" => "authorization_signing_alg_values_supported",
                "userinfo" => "userinfo_signing_alg_values_supported",
                // RFC 9701 section 7.
                "introspection" => "introspection_signing_alg_values_supported",
                "request_object_decryption" => "request_object_encryption_alg_values_supported",
                _ => continue,
            };
            add(field, &ks.alg);
        }
        if ks.purposes.iter().any(|p| p == "request_object_decryption") {
            for enc in ["A256GCM", "A128CBC-HS256"] {
                add("request_object_encryption_enc_values_supported", enc);
            }
        }
        if ks.purposes.iter().any(|p| p == "id_token" || p == "jarm") {
            // Custos encrypts to clients' keys (nested JWT) with these.
            for (alg_field, enc_field, purpose) in [
                (
                    "id_token_encryption_alg_values_supported",
                    "id_token_encryption_enc_values_supported",
                    "id_token",
                ),
                (
                    "authorization_encryption_alg_values_supported",
                    "authorization_encryption_enc_values_supported",
                    "jarm",
                ),
            ] {
                if ks.purposes.iter().any(|p| p == purpose) {
                    for a in ["RSA-OAEP-256", "ECDH-ES"] {
                        add(alg_field, a);
                    }
                    for e in ["A256GCM", "A128CBC-HS256"] {
                        add(enc_field, e);
                    }
                }
            }
        }
    }
    // What the AS accepts from clients (request objects, private_key_jwt):
    // the FAPI 2.0 algorithms Custos verifies.
    for field in [
        "request_object_signing_alg_values_supported",
        "token_endpoint_auth_signing_alg_values_supported",
        // CIBA Core 4: signed authentication requests.
        "backchannel_authentication_request_signing_alg_values_supported",
    ] {
        for a in ["PS256", "ES256", "EdDSA"] {
            add(field, a);
        }
    }
    let mut jwks_keys = Vec::new();
    for ks in keysets {
        let text = client.jwks(Some(&ks.name)).await?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| usage(format!("daemon sent invalid JWKS JSON: {e}")))?;
        if let Some(keys) = v["keys"].as_array() {
            jwks_keys.extend(keys.iter().cloned());
        }
    }
    out.insert("jwks_uri_content".into(), json!({ "keys": jwks_keys }));
    Ok(serde_json::Value::Object(out))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A token, proof or JWE given on the command line: `-` reads standard
/// input, `@FILE` reads the file (so secrets stay out of `ps` and shell
/// history); anything else is the value itself. Surrounding whitespace is
/// dropped.
fn secret_input(value: String) -> Result<String, Failure> {
    let text = if value == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| usage(format!("cannot read standard input: {e}")))?;
        s
    } else if let Some(path) = value.strip_prefix('@') {
        std::fs::read_to_string(path).map_err(|e| usage(format!("cannot read {path}: {e}")))?
    } else {
        return Ok(value);
    };
    Ok(text.trim().to_string())
}

fn read_file(path: &PathBuf) -> Result<String, Failure> {
    std::fs::read_to_string(path).map_err(|e| usage(format!("cannot read {}: {e}", path.display())))
}

async fn verify(client: &Client, cmd: VerifyCmd) -> Result<proto::Verdict, Failure> {
    Ok(match cmd {
        VerifyCmd::AccessToken {
            token,
            issuer,
            audience,
            cert,
            dpop,
            htm,
            htu,
            allow_bearer,
        } => {
            use proto::verify_access_token_request::Binding;
            let binding = match (cert, dpop) {
                (Some(path), _) => Some(Binding::ClientCertificate(
                    std::fs::read(&path)
                        .map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?,
                )),
                (None, Some(proof)) => Some(Binding::Dpop(proto::DpopProof {
                    proof: secret_input(proof)?,
                    htm: htm.unwrap_or_default(),
                    htu: htu.unwrap_or_default(),
                })),
                (None, None) => None,
            };
            client
                .verify_access_token(proto::VerifyAccessTokenRequest {
                    token: secret_input(token)?,
                    issuer: issuer.unwrap_or_default(),
                    audience: audience.unwrap_or_default(),
                    binding,
                    allow_bearer,
                })
                .await?
        }
        VerifyCmd::Jws {
            token,
            keyset,
            jwks,
            typ,
        } => {
            use proto::verify_jws_request::Keys;
            let keys = match (keyset, jwks) {
                (Some(k), _) => Keys::Keyset(k),
                (None, Some(path)) => Keys::JwksJson(read_file(&path)?),
                (None, None) => return Err(usage("give --keyset or --jwks".into())),
            };
            client
                .verify_jws(proto::VerifyJwsRequest {
                    token: secret_input(token)?,
                    keys: Some(keys),
                    typ: typ.unwrap_or_default(),
                })
                .await?
        }
        VerifyCmd::RequestObject {
            token,
            jwks,
            client_id,
            issuer,
            kind,
        } => {
            client
                .verify_request_object(proto::VerifyRequestObjectRequest {
                    token: secret_input(token)?,
                    jwks_json: read_file(&jwks)?,
                    client_id,
                    issuer,
                    kind: kind.unwrap_or_default(),
                })
                .await?
        }
        VerifyCmd::Http {
            message,
            keyset,
            jwks,
            request,
            max_age,
            require,
            tag,
            scheme,
            label,
        } => {
            use proto::verify_http_message_request::Keys;
            let keys = match (keyset, jwks) {
                (Some(k), _) => Keys::Keyset(k),
                (None, Some(path)) => Keys::JwksJson(read_file(&path)?),
                (None, None) => return Err(usage("give --keyset or --jwks".into())),
            };
            let to_proto = |p: &PathBuf| -> Result<proto::HttpMessage, Failure> {
                http_message(Some(p))?
                    .to_proto(&scheme)
                    .map_err(|e| usage(format!("{}: {e}", p.display())))
            };
            client
                .verify_http_message(proto::VerifyHttpMessageRequest {
                    message: Some(to_proto(&message)?),
                    request: request.as_ref().map(to_proto).transpose()?,
                    keys: Some(keys),
                    max_age_seconds: max_age.unwrap_or_default(),
                    required_components: require,
                    tag: tag.unwrap_or_default(),
                    label: label.unwrap_or_default(),
                })
                .await?
        }
        VerifyCmd::ClientAssertion {
            token,
            jwks,
            client_id,
            audience,
        } => {
            client
                .verify_client_assertion(proto::VerifyClientAssertionRequest {
                    token: secret_input(token)?,
                    jwks_json: read_file(&jwks)?,
                    client_id,
                    audiences: audience,
                })
                .await?
        }
    })
}

fn encryption(e: &Encrypt) -> Result<Option<proto::Encryption>, Failure> {
    let Some(path) = &e.encrypt_to else {
        return Ok(None);
    };
    let jwk = std::fs::read_to_string(path)
        .map_err(|err| usage(format!("cannot read {}: {err}", path.display())))?;
    Ok(Some(proto::Encryption {
        recipient_jwk: jwk,
        enc: e.enc.clone().unwrap_or_default(),
    }))
}

/// Reads and parses a raw HTTP/1.1 message (standard input when no path).
fn http_message(path: Option<&PathBuf>) -> Result<custos_client::http::RawMessage, Failure> {
    let bytes = match path {
        Some(p) => {
            std::fs::read(p).map_err(|e| usage(format!("cannot read {}: {e}", p.display())))?
        }
        None => {
            let mut b = Vec::new();
            std::io::stdin()
                .read_to_end(&mut b)
                .map_err(|e| usage(format!("cannot read standard input: {e}")))?;
            b
        }
    };
    custos_client::http::RawMessage::parse(&bytes).map_err(usage)
}

/// Whether the version's stored chain starts with the first certificate of `pem`.
fn pem_has_leaf(pem: &str, v: &proto::KeyVersion) -> bool {
    let first = |t: &str| {
        t.split("-----END CERTIFICATE-----")
            .next()
            .map(|b| b.split_whitespace().collect::<String>())
    };
    first(pem) == first(&v.certificate_chain_pem)
}

fn read_input(path: Option<&PathBuf>) -> Result<String, Failure> {
    match path {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| usage(format!("cannot read {}: {e}", p.display()))),
        None => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| usage(format!("cannot read standard input: {e}")))?;
            Ok(s)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("custos: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if !f.message.is_empty() {
                eprintln!("custos: {}", f.message);
            }
            ExitCode::from(f.code)
        }
    }
}
