//! `custos sign ...`: one subcommand per token kind, and HTTP messages.

use crate::args::*;
use crate::inputs::*;
use crate::output::*;
use crate::{usage, Failure};
use custos_client::{proto, Client};
use serde_json::json;

/// Runs one `SignCmd` against the daemon.
pub(crate) async fn run(client: &Client, cmd: SignCmd, json: bool) -> Result<(), Failure> {
    match cmd {
        SignCmd::Jwt(a) => {
            let claims = read_input(a.claims.as_ref())?;
            let signed = client
                .sign_jwt(&a.keyset, &a.purpose, a.typ.as_deref(), &claims)
                .await?;
            if json {
                print_json(&json!({"token": signed.jws, "kid": signed.kid}));
            } else {
                println!("{}", signed.jws);
            }
        }
        SignCmd::IdToken(a) => {
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
            print_signed(json, &client.sign_id_token(req).await?);
        }
        SignCmd::Jarm(a) => {
            let req = proto::SignJarmResponseRequest {
                keyset: a.keyset,
                client_id: a.client_id,
                lifetime_seconds: a.lifetime.unwrap_or_default(),
                params_json: read_input(a.params.as_ref())?,
                issuer: a.issuer.unwrap_or_default(),
                encrypt_to: encryption(&a.encrypt)?,
            };
            print_signed(json, &client.sign_jarm_response(req).await?);
        }
        SignCmd::RequestObject(a) => {
            let req = proto::SignRequestObjectRequest {
                keyset: a.keyset,
                claims_json: read_input(a.claims.as_ref())?,
                lifetime_seconds: a.lifetime.unwrap_or_default(),
                kind: a.kind.unwrap_or_default(),
            };
            print_signed(json, &client.sign_request_object(req).await?);
        }
        SignCmd::Introspection(a) => {
            let req = proto::SignIntrospectionResponseRequest {
                keyset: a.keyset,
                audience: a.audience,
                response_json: read_input(a.response.as_ref())?,
                issuer: a.issuer.unwrap_or_default(),
                encrypt_to: encryption(&a.encrypt)?,
            };
            print_signed(json, &client.sign_introspection_response(req).await?);
        }
        SignCmd::Http(a) => {
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
            if json {
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
        SignCmd::ClientAssertion(a) => {
            let req = proto::SignClientAssertionRequest {
                keyset: a.keyset,
                client_id: a.client_id,
                audience: a.audience,
                lifetime_seconds: a.lifetime.unwrap_or_default(),
            };
            print_signed(json, &client.sign_client_assertion(req).await?);
        }
        SignCmd::AccessToken(a) => {
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
            print_signed(json, &client.sign_access_token(req).await?);
        }
    }
    Ok(())
}
