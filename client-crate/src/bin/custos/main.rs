//! `custos`: the command-line client for custosd.
//!
//! Exit codes: 0 success; 1 the daemon refused or failed the request (for
//! `verify`: the token is invalid); 2 usage error or the daemon could not be
//! reached (for `verify`: also a request the daemon could not check).

use clap::Parser;
use custos_client::{proto, Client, Error};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

mod args;
mod audit;
mod bench;
mod inputs;
mod keyset;
mod output;
mod requests;
mod sign;
mod verify;

use args::*;
use audit::audit_verify;
use inputs::*;
use output::*;
use verify::{metadata, verify};

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
        Command::Keyset(cmd) => keyset::run(&client, cmd, cli.json).await?,
        Command::Jwks { keyset, issuer } => {
            let text = match (&keyset, &issuer) {
                (None, Some(i)) => client.issuer_jwks(i).await?,
                _ => client.jwks(keyset.as_deref()).await?,
            };
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| usage(format!("daemon sent invalid JWKS JSON: {e}")))?;
            print_json(&v);
        }
        Command::Sign(cmd) => sign::run(&client, cmd, cli.json).await?,
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
        Command::Requests(cmd) => requests::run(&client, cmd, cli.json).await?,
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
        Command::Bench(cmd) => bench::run(&client, &target, cmd, cli.json).await?,
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
