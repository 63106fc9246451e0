//! `custos`: the command-line client for custosd.
//!
//! Exit codes: 0 success; 1 the daemon refused or failed the request (for
//! `verify`: the token is invalid); 2 usage error or the daemon could not be
//! reached (for `verify`: also a request the daemon could not check).

use clap::Parser;
use custos_client::{proto, Client, Error, KeysetSpec};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

mod args;
mod audit;
mod inputs;
mod output;
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
                BenchCmd::IdToken { keyset, opts } => (Load::IdToken { keyset }, opts),
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
