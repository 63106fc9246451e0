//! The signature base (RFC 9421 2.5) and the `Signature-Input` /
//! `Signature` field values (RFC 9421 4).

use super::component::{Component, ValueError};
use super::message::Message;
use sfv::{BareItem, Dictionary, FieldType, InnerList, Item, Key, ListEntry, Parameters};

/// The most components one signature may cover (FAPI needs fewer than 10).
pub(crate) const MAX_COMPONENTS: usize = 32;

/// The signature parameters Custos writes, in this order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SignatureParams {
    /// Creation time (Unix seconds); always present.
    pub created: i64,
    /// Expiry time, when wanted.
    pub expires: Option<i64>,
    /// The key's identifier: its kid.
    pub keyid: String,
    /// The algorithm name, when it is to be stated.
    pub alg: Option<String>,
    /// The application tag (`fapi-2-request`, `fapi-2-response`).
    pub tag: Option<String>,
}

fn key(name: &'static str) -> Key {
    sfv::KeyRef::constant(name).to_owned()
}

fn string(s: &str) -> Result<BareItem, String> {
    sfv::String::from_string(s.to_string())
        .map(BareItem::String)
        .map_err(|(e, _)| format!("{s:?} cannot be a signature parameter: {e}"))
}

impl SignatureParams {
    fn to_parameters(&self) -> Result<Parameters, String> {
        let mut p = Parameters::new();
        p.insert(
            key("created"),
            BareItem::Integer(
                self.created
                    .try_into()
                    .map_err(|_| "created is out of range")?,
            ),
        );
        if let Some(e) = self.expires {
            p.insert(
                key("expires"),
                BareItem::Integer(e.try_into().map_err(|_| "expires is out of range")?),
            );
        }
        p.insert(key("keyid"), string(&self.keyid)?);
        if let Some(a) = &self.alg {
            p.insert(key("alg"), string(a)?);
        }
        if let Some(t) = &self.tag {
            p.insert(key("tag"), string(t)?);
        }
        Ok(p)
    }
}

/// Checks a label (a structured-field key such as `sig1`).
///
/// # Errors
/// A message when it is not a valid key.
pub(crate) fn label(name: &str) -> Result<Key, String> {
    Key::from_string(name.to_string())
        .map_err(|(e, _)| format!("signature label {name:?} is not valid: {e}"))
}

/// The `Signature-Input` value for one signature: `label=(components);params`.
///
/// # Errors
/// A message for an invalid label or parameter.
pub(crate) fn signature_input(
    label_name: &str,
    components: &[Component],
    params: &SignatureParams,
) -> Result<String, String> {
    let inner = InnerList::with_params(
        components.iter().map(Component::to_item).collect(),
        params.to_parameters()?,
    );
    let dict: Dictionary = [(label(label_name)?, ListEntry::InnerList(inner))]
        .into_iter()
        .collect();
    dict.serialize()
        .ok_or_else(|| "the signature input is empty".into())
}

/// The `Signature` value for one signature: `label=:base64:`.
///
/// # Errors
/// A message for an invalid label.
pub(crate) fn signature_field(label_name: &str, signature: &[u8]) -> Result<String, String> {
    let dict: Dictionary = [(
        label(label_name)?,
        ListEntry::Item(Item::new(BareItem::ByteSequence(signature.to_vec()))),
    )]
    .into_iter()
    .collect();
    dict.serialize()
        .ok_or_else(|| "the signature field is empty".into())
}

/// The signature base: one line per covered component, then the
/// `@signature-params` line whose value is `params_line` (the member value
/// of `Signature-Input`, exactly as sent).
///
/// # Errors
/// [`ValueError`] for a repeated component, too many, or one the message lacks.
pub(crate) fn signature_base(
    components: &[Component],
    message: &Message,
    request: Option<&Message>,
    params_line: &str,
) -> Result<String, ValueError> {
    if components.len() > MAX_COMPONENTS {
        return Err(ValueError::Invalid(format!(
            "{} components; at most {MAX_COMPONENTS} are accepted",
            components.len()
        )));
    }
    let mut base = String::new();
    let mut seen = std::collections::HashSet::with_capacity(components.len());
    for c in components {
        let id = c.serialize();
        if !seen.insert(id.clone()) {
            return Err(ValueError::Invalid(format!(
                "component {id} is covered twice"
            )));
        }
        let value = c.value(message, request)?;
        if value.contains('\n') || value.contains('\r') {
            return Err(ValueError::Invalid(format!(
                "component {id} has a line break in its value"
            )));
        }
        base.push_str(&id);
        base.push_str(": ");
        base.push_str(&value);
        base.push('\n');
    }
    base.push_str("\"@signature-params\": ");
    base.push_str(params_line);
    Ok(base)
}

/// The value part of a one-member `Signature-Input` (`label=` removed).
pub(crate) fn params_line<'a>(signature_input: &'a str, label_name: &str) -> Option<&'a str> {
    signature_input
        .strip_prefix(label_name)
        .and_then(|s| s.strip_prefix('='))
}
