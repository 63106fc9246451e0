//! Closed-loop load through the real socket: "how fast is my HSM through
//! Custos". N concurrent callers each send a request, wait for the answer,
//! and send the next, for a fixed time; the report has throughput,
//! latency percentiles and errors.

use crate::{proto, Client, Error};
use std::time::{Duration, Instant};

/// A fixed, self-signed client certificate (public part only) used to bind
/// the access token that `bench verify` checks over and over.
pub const BENCH_CERT_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBkzCCATmgAwIBAgIUBzWAsQh7W7ntZ2CuInNH5V8yUPcwCgYIKoZIzj0EAwIw
HjEcMBoGA1UEAwwTY3VzdG9zLWJlbmNoLWNsaWVudDAgFw0yNjExMjUxMzE3NDla
GA8yMTI2MTEwMTEzMTc0OVowHjEcMBoGA1UEAwwTY3VzdG9zLWJlbmNoLWNsaWVu
dDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABL96/ymFlEDhXSFAgmcCZhGL/aNF
b2Df4Q9Xqsn6dyfZclp38C4uYHGKQ7Xntx/tbVcH5jJzHaU2YO1qnlXOHjqjUzBR
MB0GA1UdDgQWBBSGnIEc9Ag8wWgUsnsN69SNkpsxnDAfBgNVHSMEGDAWgBSGnIEc
9Ag8wWgUsnsN69SNkpsxnDAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gA
MEUCIC2lql7yiIcTylveDCIn1d+ZAk69R7FlaZLm2xE1QEnvAiEAo0KiIFBp/JZ1
cm27VS2hXw07mY+SBQfPVRf9FS1Xu8Y=
-----END CERTIFICATE-----
";

pub use custos_proto::bench::{report, Report};

/// What to load the daemon with.
#[derive(Debug, Clone)]
pub enum Load {
    /// SignJwt (or SignJwtBatch with `batch` > 1).
    Sign {
        /// Keyset.
        keyset: String,
        /// Purpose.
        purpose: String,
        /// Claim sets per call.
        batch: usize,
    },
    /// SignIdToken: an ES256/PS256 OpenID Connect ID token with `at_hash`
    /// (the typed operation an authorization server calls most).
    IdToken {
        /// Keyset (purpose id_token, with an issuer).
        keyset: String,
    },
    /// VerifyAccessToken of one certificate-bound token.
    Verify {
        /// The token.
        token: String,
    },
    /// The gRPC health check: one unary round trip through the same socket
    /// and stack with no device, JOSE or audit work; the transport's floor.
    Health,
}

async fn one_call(client: &Client, load: &Load, claims: &str) -> Result<u64, Error> {
    match load {
        Load::Sign {
            keyset,
            purpose,
            batch,
        } if *batch > 1 => {
            let out = client
                .sign_jwt_batch(keyset, purpose, None, vec![claims.to_string(); *batch])
                .await?;
            let ok = out
                .iter()
                .filter(|i| matches!(i.result, Some(proto::batch_item::Result::Signed(_))))
                .count() as u64;
            if ok as usize != *batch {
                return Err(Error::Status(tonic::Status::internal(
                    "a batch item failed",
                )));
            }
            Ok(ok)
        }
        Load::Sign {
            keyset, purpose, ..
        } => {
            client.sign_jwt(keyset, purpose, None, claims).await?;
            Ok(1)
        }
        Load::IdToken { keyset } => {
            client
                .sign_id_token(proto::SignIdTokenRequest {
                    keyset: keyset.clone(),
                    claims_json: claims.to_string(),
                    access_token: "SlAV32hkKG-bench-access-token".into(),
                    ..Default::default()
                })
                .await?;
            Ok(1)
        }
        Load::Health => {
            let mut health = tonic_health::pb::health_client::HealthClient::new(client.channel());
            let r = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: String::new(),
                })
                .await?
                .into_inner();
            if r.status != tonic_health::pb::health_check_response::ServingStatus::Serving as i32 {
                return Err(Error::Status(tonic::Status::internal("not serving")));
            }
            Ok(1)
        }
        Load::Verify { token } => {
            let v = client
                .verify_access_token(proto::VerifyAccessTokenRequest {
                    token: token.clone(),
                    binding: Some(
                        proto::verify_access_token_request::Binding::ClientCertificate(
                            BENCH_CERT_PEM.as_bytes().to_vec(),
                        ),
                    ),
                    ..Default::default()
                })
                .await?;
            if !v.valid {
                return Err(Error::Status(tonic::Status::internal(format!(
                    "invalid: {}",
                    v.reason
                ))));
            }
            Ok(1)
        }
    }
}

/// Runs `load` with `concurrency` callers for `duration`, spread round
/// robin over `clients` (one connection each).
pub async fn run(clients: &[Client], load: Load, concurrency: usize, duration: Duration) -> Report {
    // A realistic claim set within the keyset's lifetime ceiling (generic
    // signing applies it like every other token kind).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = serde_json::json!({
        "iss": "https://as.bank.example", "sub": "248289761001", "aud": "client-app-1",
        "exp": now + 300, "iat": now, "nonce": "n-0S6_WzA2Mj",
        "acr": "urn:mace:incommon:iap:silver", "auth_time": now
    })
    .to_string();
    let batch = match &load {
        Load::Sign { batch, .. } => (*batch).max(1),
        Load::IdToken { .. } | Load::Verify { .. } | Load::Health => 1,
    };
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    if clients.is_empty() {
        return report(Vec::new(), 0, 0, Duration::ZERO, concurrency, batch);
    }
    for i in 0..concurrency.max(1) {
        let client = clients[i % clients.len()].clone();
        let (load, claims) = (load.clone(), claims.clone());
        tasks.spawn(async move {
            let (mut lat, mut errors, mut ops) = (Vec::new(), 0u64, 0u64);
            while Instant::now() < deadline {
                let t = Instant::now();
                match one_call(&client, &load, &claims).await {
                    Ok(n) => {
                        ops += n;
                        lat.push(t.elapsed().as_micros() as u64);
                    }
                    Err(_) => errors += 1,
                }
            }
            (lat, errors, ops)
        });
    }
    let (mut lat, mut errors, mut ops) = (Vec::new(), 0, 0);
    while let Some(Ok((l, e, o))) = tasks.join_next().await {
        lat.extend(l);
        errors += e;
        ops += o;
    }
    report(lat, errors, ops, start.elapsed(), concurrency, batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let r = report((1..=1000).collect(), 2, 1000, Duration::from_secs(2), 4, 1);
        assert_eq!(r.p50_us, 500);
        assert_eq!(r.p99_us, 990);
        assert_eq!(r.p999_us, 999);
        assert_eq!(r.ops_per_sec, 500.0);
        let empty = report(vec![], 0, 0, Duration::from_secs(1), 1, 1);
        assert_eq!(empty.p50_us, 0);
    }
}
