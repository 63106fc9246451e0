//! `custos bench ...`: load the daemon with one operation at a concurrency
//! and report rate and latency.

use crate::args::*;
use crate::inputs::*;
use crate::{connect, Failure, Target};
use custos_client::{proto, Client};
use serde_json::json;

/// Runs one `custos bench` subcommand.
pub(crate) async fn run(
    client: &Client,
    target: &Target,
    cmd: BenchCmd,
    json: bool,
) -> Result<(), Failure> {
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
        clients.push(connect(target).await?);
    }
    let r = bench::run(
        &clients,
        load,
        opts.concurrency,
        std::time::Duration::from_secs(opts.duration),
    )
    .await;
    if json {
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
    Ok(())
}
