//! `custos audit verify`: the offline check of audit logs.

use super::output::print_json;
use super::{usage, Failure};
use serde_json::json;
use std::path::PathBuf;

/// `custos audit verify`: reads the files and the JWKS, prints the report.
pub(crate) fn audit_verify(
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
