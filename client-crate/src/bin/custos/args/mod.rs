//! The command line: every subcommand and option of `custos` (clap).

mod sign;

pub(crate) use sign::*;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Command-line client for the Custos signing daemon.
#[derive(Debug, Parser)]
#[command(name = "custos", version)]
pub(crate) struct Cli {
    /// The daemon's Unix socket.
    #[arg(
        long,
        global = true,
        env = "CUSTOS_SOCKET",
        default_value = "/run/custos/custos.sock"
    )]
    pub(crate) socket: PathBuf,
    /// Connect over TCP with mutual TLS instead: https://HOST:PORT (needs --cert, --key, --ca).
    #[arg(long, requires_all = ["cert", "key", "ca"])]
    pub(crate) endpoint: Option<String>,
    /// Client certificate (PEM) for --endpoint.
    #[arg(long)]
    pub(crate) cert: Option<PathBuf>,
    /// Client private key (PEM) for --endpoint.
    #[arg(long)]
    pub(crate) key: Option<PathBuf>,
    /// CA certificate (PEM) that issued the daemon's certificate, for --endpoint.
    #[arg(long)]
    pub(crate) ca: Option<PathBuf>,
    /// Print results as JSON: keysets, bench figures, doctor reports, and
    /// verdicts ({valid, reason, detail, keyset, kid, claims} on standard
    /// output, valid or not); exit codes stay the same.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
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
pub(crate) enum KeysetCmd {
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
pub(crate) enum RequestsCmd {
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
pub(crate) enum AuditCmd {
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

#[derive(Debug, Args)]
pub(crate) struct BenchOpts {
    /// Concurrent callers.
    #[arg(long, default_value_t = 32)]
    pub(crate) concurrency: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    pub(crate) duration: u64,
    /// Connections the callers share (round robin).
    #[arg(long, default_value_t = 4)]
    pub(crate) connections: usize,
}

#[derive(Debug, Subcommand)]
pub(crate) enum BenchCmd {
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
    /// SignIdToken (with at_hash) with a keyset of purpose id_token.
    IdToken {
        /// Keyset name (purpose id_token; its issuer is the token's `iss`).
        #[arg(long)]
        keyset: String,
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
pub(crate) enum VerifyCmd {
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
