//! The verifier's side: reading one signature out of a message's
//! `Signature-Input` and `Signature` fields, rebuilding its base, and the
//! rules a FAPI verifier applies (age of `created`, covered components,
//! `tag`, `Content-Digest`).

use super::base::signature_base;
use super::component::{Component, ValueError};
use super::digest;
use super::message::Message;
use crate::verdict::{invalid, Invalid, Reason};
use sfv::{Dictionary, FieldType, Key, ListEntry, Parser};

/// A signature found in a message, with the base it signs.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    /// Its label (`sig1`).
    pub label: String,
    /// The covered components, in order.
    pub components: Vec<Component>,
    /// `created`, when present.
    pub created: Option<i64>,
    /// `expires`, when present.
    pub expires: Option<i64>,
    /// `keyid`, when present.
    pub keyid: Option<String>,
    /// `alg`, when present.
    pub alg: Option<String>,
    /// `tag`, when present.
    pub tag: Option<String>,
    /// The signature bytes.
    pub signature: Vec<u8>,
    /// The signature base rebuilt from the message.
    pub base: String,
}

fn malformed(detail: impl Into<String>) -> Invalid {
    invalid(Reason::Malformed, detail)
}

fn dictionary(message: &Message, name: &str) -> Result<Dictionary, Invalid> {
    let field = message
        .field(name)
        .ok_or_else(|| malformed(format!("the message has no {name} field")))?;
    Parser::new(&field)
        .parse()
        .map_err(|e| malformed(format!("{name}: {e}")))
}

/// Finds the signature to check: the one labelled `label`, else the one
/// whose `tag` is `tag`, else the only one.
///
/// # Errors
/// [`Invalid`] (`malformed`, `missing_component`) when the fields are
/// broken, the signature is ambiguous, or the message lacks a covered component.
pub(crate) fn received(
    message: &Message,
    request: Option<&Message>,
    label: Option<&str>,
    tag: Option<&str>,
) -> Result<Received, Invalid> {
    let inputs = dictionary(message, "signature-input")?;
    let signatures = dictionary(message, "signature")?;
    let tag_of = |e: &ListEntry| match e {
        ListEntry::InnerList(l) => l
            .params
            .get("tag")
            .and_then(|v| v.as_string())
            .map(|s| s.as_str().to_string()),
        ListEntry::Item(_) => None,
    };
    let chosen: Vec<(&Key, &ListEntry)> = match (label, tag) {
        (Some(l), _) => inputs.iter().filter(|(k, _)| k.as_str() == l).collect(),
        // By tag; when no signature has it but there is only one, that one
        // is checked (and refused with wrong_tag by `apply`).
        (None, Some(t)) => {
            let tagged: Vec<_> = inputs
                .iter()
                .filter(|(_, e)| tag_of(e).as_deref() == Some(t))
                .collect();
            if tagged.is_empty() && inputs.len() == 1 {
                inputs.iter().collect()
            } else {
                tagged
            }
        }
        (None, None) => inputs.iter().collect(),
    };
    let [(key, entry)] = chosen.as_slice() else {
        return Err(malformed(format!(
            "expected one signature{}{}, found {}",
            label.map(|l| format!(" labelled {l}")).unwrap_or_default(),
            tag.map(|t| format!(" tagged {t}")).unwrap_or_default(),
            chosen.len()
        )));
    };
    let ListEntry::InnerList(inner) = entry else {
        return Err(malformed("a Signature-Input member must be an inner list"));
    };
    let components = inner
        .items
        .iter()
        .map(Component::from_item)
        .collect::<Result<Vec<_>, _>>()
        .map_err(malformed)?;
    let int = |n: &str| -> Result<Option<i64>, Invalid> {
        match inner.params.get(n) {
            None => Ok(None),
            Some(v) => v
                .as_integer()
                .map(|i| Some(i64::from(i)))
                .ok_or_else(|| malformed(format!("{n} must be an integer"))),
        }
    };
    let text = |n: &str| -> Result<Option<String>, Invalid> {
        match inner.params.get(n) {
            None => Ok(None),
            Some(v) => v
                .as_string()
                .map(|s| Some(s.as_str().to_string()))
                .ok_or_else(|| malformed(format!("{n} must be a string"))),
        }
    };
    let one: Dictionary = [((*key).clone(), (*entry).clone())].into_iter().collect();
    let serialized = one
        .serialize()
        .ok_or_else(|| malformed("empty Signature-Input"))?;
    let params_line = super::base::params_line(&serialized, key.as_str())
        .ok_or_else(|| malformed("Signature-Input does not serialize"))?;
    let base = signature_base(&components, message, request, params_line).map_err(|e| match e {
        ValueError::Missing(m) => invalid(Reason::MissingComponent, m),
        ValueError::Invalid(m) => malformed(m),
    })?;
    let signature = match signatures.get(key.as_str()) {
        Some(ListEntry::Item(i)) => i
            .bare_item
            .as_byte_sequence()
            .map(<[u8]>::to_vec)
            .ok_or_else(|| malformed("a Signature member must be a byte sequence"))?,
        _ => {
            return Err(malformed(format!(
                "the Signature field has no member {}",
                key.as_str()
            )))
        }
    };
    Ok(Received {
        label: key.as_str().to_string(),
        components,
        created: int("created")?,
        expires: int("expires")?,
        keyid: text("keyid")?,
        alg: text("alg")?,
        tag: text("tag")?,
        signature,
        base,
    })
}

/// What a verifier demands of a signature.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    /// The current time (Unix seconds).
    pub now: i64,
    /// The oldest acceptable `created`, as an age in seconds.
    pub max_age: i64,
    /// Clock skew allowed for `created` in the future.
    pub skew: i64,
    /// Components the signature must cover.
    pub required: Vec<Component>,
    /// The `tag` it must carry, if any.
    pub tag: Option<String>,
}

/// The label of a message's only signature, if it has exactly one.
pub(crate) fn only_signature_label(message: &Message) -> Option<String> {
    let field = message.field("signature")?;
    let dict: Dictionary = Parser::new(&field).parse().ok()?;
    let mut keys = dict.keys();
    match (keys.next(), keys.next()) {
        (Some(k), None) => Some(k.as_str().to_string()),
        _ => None,
    }
}

/// The components FAPI 2.0 Message Signing wants covered: for a request
/// `@method`, `@target-uri`, and `authorization`, `dpop` and
/// `content-digest` when present; for a response `@status` and
/// `content-digest` when present, plus, when the request is known,
/// `@method;req`, `@target-uri;req` and the request's signature
/// (`"signature";req;key="sig1"`) when it has exactly one.
pub(crate) fn fapi_components(message: &Message, request: Option<&Message>) -> Vec<Component> {
    let mut names: Vec<String> = Vec::new();
    if message.is_response() {
        names.push("@status".into());
        if let Some(r) = request {
            names.extend(["@method;req".into(), "@target-uri;req".into()]);
            if let Some(label) = only_signature_label(r) {
                names.push(format!("\"signature\";req;key=\"{label}\""));
            }
        }
    } else {
        names.extend(["@method".into(), "@target-uri".into()]);
        for f in ["authorization", "dpop"] {
            if message.has_field(f) {
                names.push(f.into());
            }
        }
    }
    if message.has_body() || message.has_field("content-digest") {
        names.push("content-digest".into());
    }
    names
        .iter()
        .filter_map(|n| Component::parse(n).ok())
        .collect()
}

/// Applies `policy` to a received signature, and checks `Content-Digest`
/// against the body when the message has one.
///
/// # Errors
/// [`Invalid`]: `malformed` (no `created`), `not_yet_valid`, `expired`,
/// `missing_component`, `wrong_tag`, `digest_mismatch`.
pub(crate) fn apply(
    received: &Received,
    message: &Message,
    policy: &Policy,
) -> Result<(), Invalid> {
    let created = received
        .created
        .ok_or_else(|| malformed("the signature has no created parameter"))?;
    if created > policy.now + policy.skew {
        return Err(invalid(
            Reason::NotYetValid,
            format!("created {created} is in the future"),
        ));
    }
    if policy.now - created > policy.max_age {
        return Err(invalid(
            Reason::Expired,
            format!(
                "created {created} is {} s old; at most {} s accepted",
                policy.now - created,
                policy.max_age
            ),
        ));
    }
    if let Some(e) = received.expires {
        if e + policy.skew < policy.now {
            return Err(invalid(Reason::Expired, format!("expired at {e}")));
        }
    }
    for r in &policy.required {
        if !received.components.contains(r) {
            return Err(invalid(
                Reason::MissingComponent,
                format!("the signature does not cover {}", r.serialize()),
            ));
        }
    }
    if let Some(t) = &policy.tag {
        if received.tag.as_deref() != Some(t.as_str()) {
            return Err(invalid(
                Reason::WrongTag,
                format!("tag {:?} is not {t:?}", received.tag),
            ));
        }
    }
    // The body is checked against Content-Digest whenever either exists:
    // a stripped body does not match its digest.
    let body = message.body.as_deref().unwrap_or_default();
    match message.field("content-digest") {
        Some(field) => digest::check(&field, body)?,
        None if !body.is_empty() => {
            return Err(invalid(
                Reason::MissingComponent,
                "the message has a body but no Content-Digest",
            ))
        }
        None => {}
    }
    Ok(())
}
