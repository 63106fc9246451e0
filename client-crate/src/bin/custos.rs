//! `custos`: the command-line client for custosd.
//!
//! Exit codes: 0 success; 1 the daemon refused or failed the request;
//! 2 usage error or the daemon could not be reached.

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create and inspect keysets.
    #[command(subcommand)]
    Keyset(KeysetCmd),
    /// Print the JWK Set (public keys only).
    Jwks {
        /// Only this keyset's keys.
        #[arg(long)]
        keyset: Option<String>,
    },
    /// Sign tokens.
    #[command(subcommand)]
    Sign(SignCmd),
}

#[derive(Debug, Subcommand)]
enum KeysetCmd {
    /// Create a keyset; its first key is generated inside the backend device.
    Create {
        /// Keyset name.
        name: String,
        /// ES256, PS256, EdDSA or RS256.
        #[arg(long)]
        alg: String,
        /// Purposes, comma-separated: id_token, jarm, access_token, userinfo,
        /// request_object, client_assertion, generic.
        #[arg(long, value_delimiter = ',', required = true)]
        purpose: Vec<String>,
        /// Backend name from the daemon's config.
        #[arg(long)]
        backend: Option<String>,
        /// FAPI profile: fapi2 (default), fapi1-advanced or oidc.
        #[arg(long)]
        profile: Option<String>,
    },
    /// List keysets.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one keyset and its versions.
    Show {
        /// Keyset name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum SignCmd {
    /// Sign a JSON object of claims as a compact JWS.
    Jwt(SignJwt),
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

fn keyset_json(ks: &proto::Keyset) -> serde_json::Value {
    json!({
        "name": ks.name,
        "alg": ks.alg,
        "purposes": ks.purposes,
        "backend": ks.backend,
        "profile": ks.profile,
        "created_at": ks.created_at,
        "versions": ks.versions.iter().map(|v| json!({
            "kid": v.kid, "state": v.state, "created_at": v.created_at,
        })).collect::<Vec<_>>(),
    })
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

async fn run(cli: Cli) -> Result<(), Failure> {
    let client = Client::connect_unix(&cli.socket).await?;
    match cli.command {
        Command::Keyset(KeysetCmd::Create {
            name,
            alg,
            purpose,
            backend,
            profile,
        }) => {
            let ks = client
                .create_keyset(KeysetSpec {
                    name,
                    alg,
                    purposes: purpose,
                    backend,
                    profile,
                })
                .await?;
            println!(
                "created keyset {} ({}), kid {}",
                ks.name,
                ks.alg,
                active_kid(&ks)
            );
        }
        Command::Keyset(KeysetCmd::List { json }) => {
            let list = client.list_keysets().await?;
            if json {
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
        Command::Keyset(KeysetCmd::Show { name, json }) => {
            let ks = client.get_keyset(&name).await?;
            if json {
                print_json(&keyset_json(&ks));
            } else {
                println!("keyset   {}", ks.name);
                println!("alg      {}", ks.alg);
                println!("profile  {}", ks.profile);
                println!("backend  {}", ks.backend);
                println!("purposes {}", ks.purposes.join(", "));
                for v in &ks.versions {
                    println!("  {} {:<9} created {}", v.kid, v.state, v.created_at);
                }
            }
        }
        Command::Jwks { keyset } => {
            let text = client.jwks(keyset.as_deref()).await?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| usage(format!("daemon sent invalid JWKS JSON: {e}")))?;
            print_json(&v);
        }
        Command::Sign(SignCmd::Jwt(a)) => {
            let claims = read_input(a.claims.as_ref())?;
            let signed = client
                .sign_jwt(&a.keyset, &a.purpose, a.typ.as_deref(), &claims)
                .await?;
            println!("{}", signed.jws);
        }
    }
    Ok(())
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
            eprintln!("custos: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}
