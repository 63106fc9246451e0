//! `custos verify ...` and `custos metadata`: checks and documents built from the daemon's answers.

use super::args::*;
use super::inputs::*;
use super::{usage, Failure};
use custos_client::{proto, Client};
use serde_json::json;
use std::path::PathBuf;

pub(crate) async fn verify(client: &Client, cmd: VerifyCmd) -> Result<proto::Verdict, Failure> {
    Ok(match cmd {
        VerifyCmd::AccessToken {
            token,
            issuer,
            audience,
            cert,
            dpop,
            htm,
            htu,
            allow_bearer,
        } => {
            use proto::verify_access_token_request::Binding;
            let binding = match (cert, dpop) {
                (Some(path), _) => Some(Binding::ClientCertificate(
                    std::fs::read(&path)
                        .map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?,
                )),
                (None, Some(proof)) => Some(Binding::Dpop(proto::DpopProof {
                    proof: secret_input(proof)?,
                    htm: htm.unwrap_or_default(),
                    htu: htu.unwrap_or_default(),
                })),
                (None, None) => None,
            };
            client
                .verify_access_token(proto::VerifyAccessTokenRequest {
                    token: secret_input(token)?,
                    issuer: issuer.unwrap_or_default(),
                    audience: audience.unwrap_or_default(),
                    binding,
                    allow_bearer,
                })
                .await?
        }
        VerifyCmd::Jws {
            token,
            keyset,
            jwks,
            typ,
        } => {
            use proto::verify_jws_request::Keys;
            let keys = match (keyset, jwks) {
                (Some(k), _) => Keys::Keyset(k),
                (None, Some(path)) => Keys::JwksJson(read_file(&path)?),
                (None, None) => return Err(usage("give --keyset or --jwks".into())),
            };
            client
                .verify_jws(proto::VerifyJwsRequest {
                    token: secret_input(token)?,
                    keys: Some(keys),
                    typ: typ.unwrap_or_default(),
                })
                .await?
        }
        VerifyCmd::RequestObject {
            token,
            jwks,
            client_id,
            issuer,
            kind,
        } => {
            client
                .verify_request_object(proto::VerifyRequestObjectRequest {
                    token: secret_input(token)?,
                    jwks_json: read_file(&jwks)?,
                    client_id,
                    issuer,
                    kind: kind.unwrap_or_default(),
                })
                .await?
        }
        VerifyCmd::Http {
            message,
            keyset,
            jwks,
            request,
            max_age,
            require,
            tag,
            scheme,
            label,
        } => {
            use proto::verify_http_message_request::Keys;
            let keys = match (keyset, jwks) {
                (Some(k), _) => Keys::Keyset(k),
                (None, Some(path)) => Keys::JwksJson(read_file(&path)?),
                (None, None) => return Err(usage("give --keyset or --jwks".into())),
            };
            let to_proto = |p: &PathBuf| -> Result<proto::HttpMessage, Failure> {
                http_message(Some(p))?
                    .to_proto(&scheme)
                    .map_err(|e| usage(format!("{}: {e}", p.display())))
            };
            client
                .verify_http_message(proto::VerifyHttpMessageRequest {
                    message: Some(to_proto(&message)?),
                    request: request.as_ref().map(to_proto).transpose()?,
                    keys: Some(keys),
                    max_age_seconds: max_age.unwrap_or_default(),
                    required_components: require,
                    tag: tag.unwrap_or_default(),
                    label: label.unwrap_or_default(),
                })
                .await?
        }
        VerifyCmd::ClientAssertion {
            token,
            jwks,
            client_id,
            audience,
        } => {
            client
                .verify_client_assertion(proto::VerifyClientAssertionRequest {
                    token: secret_input(token)?,
                    jwks_json: read_file(&jwks)?,
                    client_id,
                    audiences: audience,
                })
                .await?
        }
    })
}

/// Discovery metadata (OpenID Connect Discovery, RFC 8414, JARM, RFC 9101,
/// RFC 9701) for what these keysets will actually do.
pub(crate) async fn metadata(
    client: &Client,
    keysets: &[&proto::Keyset],
) -> Result<serde_json::Value, Failure> {
    let mut out = serde_json::Map::new();
    let mut add = |field: &str, value: &str| {
        if let Some(list) = out
            .entry(field.to_string())
            .or_insert_with(|| json!([]))
            .as_array_mut()
        {
            if !list.iter().any(|v| v == value) {
                list.push(json!(value));
            }
        }
    };
    for ks in keysets {
        for p in &ks.purposes {
            let field = match p.as_str() {
                "id_token" => "id_token_signing_alg_values_supported",
                "jarm" => "authorization_signing_alg_values_supported",
                "userinfo" => "userinfo_signing_alg_values_supported",
                // RFC 9701 section 7.
                "introspection" => "introspection_signing_alg_values_supported",
                "request_object_decryption" => "request_object_encryption_alg_values_supported",
                _ => continue,
            };
            add(field, &ks.alg);
        }
        if ks.purposes.iter().any(|p| p == "request_object_decryption") {
            for enc in ["A256GCM", "A128CBC-HS256"] {
                add("request_object_encryption_enc_values_supported", enc);
            }
        }
        if ks.purposes.iter().any(|p| p == "id_token" || p == "jarm") {
            // Custos encrypts to clients' keys (nested JWT) with these.
            for (alg_field, enc_field, purpose) in [
                (
                    "id_token_encryption_alg_values_supported",
                    "id_token_encryption_enc_values_supported",
                    "id_token",
                ),
                (
                    "authorization_encryption_alg_values_supported",
                    "authorization_encryption_enc_values_supported",
                    "jarm",
                ),
            ] {
                if ks.purposes.iter().any(|p| p == purpose) {
                    for a in ["RSA-OAEP-256", "ECDH-ES"] {
                        add(alg_field, a);
                    }
                    for e in ["A256GCM", "A128CBC-HS256"] {
                        add(enc_field, e);
                    }
                }
            }
        }
    }
    // What the AS accepts from clients (request objects, private_key_jwt):
    // the FAPI 2.0 algorithms Custos verifies.
    for field in [
        "request_object_signing_alg_values_supported",
        "token_endpoint_auth_signing_alg_values_supported",
        // CIBA Core 4: signed authentication requests.
        "backchannel_authentication_request_signing_alg_values_supported",
    ] {
        for a in ["PS256", "ES256", "EdDSA"] {
            add(field, a);
        }
    }
    let mut jwks_keys = Vec::new();
    for ks in keysets {
        let text = client.jwks(Some(&ks.name)).await?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| usage(format!("daemon sent invalid JWKS JSON: {e}")))?;
        if let Some(keys) = v["keys"].as_array() {
            jwks_keys.extend(keys.iter().cloned());
        }
    }
    out.insert("jwks_uri_content".into(), json!({ "keys": jwks_keys }));
    Ok(serde_json::Value::Object(out))
}
