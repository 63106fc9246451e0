//! `custos keyset ...`: create, list, show, rotate and the other version
//! changes, policies, CSRs and certificates.

use crate::args::*;
use crate::inputs::*;
use crate::output::*;
use crate::{usage, Failure};
use custos_client::{proto, Client, KeysetSpec};
use serde_json::json;

/// Runs one `KeysetCmd` against the daemon.
pub(crate) async fn run(client: &Client, cmd: KeysetCmd, json: bool) -> Result<(), Failure> {
    match cmd {
        KeysetCmd::Create {
            name,
            alg,
            purpose,
            backend,
            profile,
            issuer,
            max_lifetime,
        } => {
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
            if json {
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
        KeysetCmd::List => {
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
        KeysetCmd::Show { name } => {
            let ks = client.get_keyset(&name).await?;
            if json {
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
        KeysetCmd::Rotate { name, now } => {
            let ks = client.rotate(&name, now).await?;
            let newest = ks.versions.last().map_or("-", |v| v.kid.as_str());
            let state = ks.versions.last().map_or("-", |v| v.state.as_str());
            changed(json, &ks, &format!("{name}: new key {newest} is {state}"));
        }
        KeysetCmd::Activate { name, kid } => {
            let ks = client.activate(&name, &kid).await?;
            changed(json, &ks, &format!("{name}: {kid} is active"));
        }
        KeysetCmd::Retire { name, kid } => {
            let ks = client.retire(&name, &kid).await?;
            changed(json, &ks, &format!("{name}: {kid} is retired"));
        }
        KeysetCmd::Disable { name, kid } => {
            let ks = client.disable(&name, &kid).await?;
            changed(json, &ks, &format!("{name}: {kid} is disabled"));
        }
        KeysetCmd::Destroy { name, kid, yes } => {
            if !yes {
                return Err(usage(format!(
                    "destroying {kid} cannot be undone; add --yes to confirm"
                )));
            }
            let ks = client.destroy(&name, &kid, true).await?;
            changed(json, &ks, &format!("{name}: {kid} is destroyed"));
        }
        KeysetCmd::Policy {
            name,
            rotation_period,
            publish_ahead,
            retain_for,
            auto_destroy,
        } => {
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
        KeysetCmd::Csr {
            name,
            subject,
            sans,
            output,
            kid,
        } => {
            let csr = client
                .create_certificate_request(&name, kid.as_deref(), &subject, &sans)
                .await?;
            if let Some(path) = &output {
                std::fs::write(path, &csr.csr_pem)
                    .map_err(|e| usage(format!("cannot write {}: {e}", path.display())))?;
            }
            if json {
                print_json(&json!({"keyset": name, "kid": csr.kid, "csr_pem": csr.csr_pem}));
            } else if output.is_none() {
                print!("{}", csr.csr_pem);
            } else {
                eprintln!("{name}: certificate request for {} written", csr.kid);
            }
        }
        KeysetCmd::SetCertificate { name, chain } => {
            let pem = read_input(chain.as_ref())?;
            let ks = client.set_certificate(&name, &pem).await?;
            let v = ks
                .versions
                .iter()
                .find(|v| !v.x5t_s256.is_empty() && pem_has_leaf(&pem, v));
            let what = v.map_or_else(String::new, |v| {
                format!("certificate for {} stored (x5t#S256 {})", v.kid, v.x5t_s256)
            });
            changed(json, &ks, &format!("{name}: {what}"));
        }
    }
    Ok(())
}
