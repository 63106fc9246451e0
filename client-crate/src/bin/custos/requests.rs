//! `custos requests ...`: dual-control requests (list, show, approve,
//! reject).

use crate::args::*;
use crate::output::*;
use crate::Failure;
use custos_client::Client;
use serde_json::json;

/// Runs one `RequestsCmd` against the daemon.
pub(crate) async fn run(client: &Client, cmd: RequestsCmd, json: bool) -> Result<(), Failure> {
    match cmd {
        RequestsCmd::List => {
            let all = client.list_requests().await?;
            if json {
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
        RequestsCmd::Show { id } => {
            let r = client.get_request(&id).await?;
            print_json(&request_json(&r));
        }
        RequestsCmd::Approve { id, digest } => {
            let r = client.approve_request(&id, &digest).await?;
            if json {
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
        RequestsCmd::Reject { id, reason } => {
            let r = client.reject_request(&id, &reason).await?;
            if json {
                print_json(&request_json(&r));
            } else {
                println!("{id}: rejected");
            }
        }
    }
    Ok(())
}
