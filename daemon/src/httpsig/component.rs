//! Component identifiers (RFC 9421 2): a lower-case name, either a field
//! name or a derived `@` name, with the parameters Custos supports: `req`
//! (take it from the request a response answers) and `key` (one member of a
//! Dictionary field, e.g. `"signature";req;key="sig1"`).

use super::message::Message;
use sfv::{BareItem, Dictionary, FieldType, Item, ListEntry, Parameters, Parser};

/// Why a component has no value in a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueError {
    /// The message lacks it (a field, a dictionary member, the request).
    Missing(String),
    /// It cannot be taken from this message at all (a request-only component
    /// of a response, a duplicate, a line break, a bad target URI).
    Invalid(String),
}

impl std::fmt::Display for ValueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing(m) | Self::Invalid(m) => f.write_str(m),
        }
    }
}

impl From<ValueError> for String {
    fn from(e: ValueError) -> Self {
        e.to_string()
    }
}

/// One covered component.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Component {
    /// Checked when parsed: a valid structured-field string, lower case.
    name: sfv::String,
    params: Parameters,
}

impl Component {
    /// A plain component (no parameters); the tests build covered lists
    /// with it.
    ///
    /// # Errors
    /// A message for a name that is not lower case or is empty.
    #[cfg(test)]
    pub(crate) fn named(name: &str) -> Result<Self, String> {
        Self::from_item(&Item::new(sf_string(name)?))
    }

    /// Parses a component as a person or the CLI writes it: `@method`,
    /// `content-digest`, `@method;req`, `"signature";req;key="sig1"`.
    ///
    /// # Errors
    /// A message naming what is wrong.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let quoted = if text.starts_with('"') {
            text.to_string()
        } else {
            match text.split_once(';') {
                Some((name, rest)) => format!("\"{name}\";{rest}"),
                None => format!("\"{text}\""),
            }
        };
        let item: Item = Parser::new(&quoted)
            .parse()
            .map_err(|e| format!("component {text:?} is not a component identifier: {e}"))?;
        Self::from_item(&item)
    }

    /// Checks one item of a `Signature-Input` inner list.
    ///
    /// # Errors
    /// A message for a non-string item, an upper-case name, or a parameter
    /// Custos does not support.
    pub(crate) fn from_item(item: &Item) -> Result<Self, String> {
        let sf_name: sfv::String = item
            .bare_item
            .as_string()
            .ok_or("a component identifier must be a string")?
            .to_owned();
        let name = sf_name.as_str();
        if name.is_empty() || name != name.to_ascii_lowercase() {
            return Err(format!(
                "component name {name:?} must be non-empty and lower case"
            ));
        }
        if name == "@signature-params" {
            return Err("@signature-params cannot be covered".into());
        }
        for (k, v) in &item.params {
            match k.as_str() {
                "req" if v.as_boolean() == Some(true) => {}
                "key" if v.as_string().is_some() && !name.starts_with('@') => {}
                other => {
                    return Err(format!(
                        "component parameter {other:?} on {name:?} is not supported \
                         (Custos supports req, and key on dictionary fields)"
                    ))
                }
            }
        }
        Ok(Self {
            name: sf_name,
            params: item.params.clone(),
        })
    }

    /// The component's name.
    pub(crate) fn name(&self) -> &str {
        self.name.as_str()
    }

    /// Whether the component is taken from the request (`req`).
    pub(crate) fn names_the_request(&self) -> bool {
        self.params.keys().any(|k| k.as_str() == "req")
    }

    /// The Dictionary member asked for by `key`, if any.
    pub(crate) fn key(&self) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.as_str() == "key")
            .and_then(|(_, v)| v.as_string())
            .map(|s| s.as_str())
    }

    /// The component as an item of the `Signature-Input` inner list.
    pub(crate) fn to_item(&self) -> Item {
        Item::with_params(BareItem::String(self.name.clone()), self.params.clone())
    }

    /// The identifier as it starts a line of the signature base (`"@method";req`).
    pub(crate) fn serialize(&self) -> String {
        self.to_item().serialize()
    }

    /// The component's value in `message` (or in `request` for `req`).
    ///
    /// # Errors
    /// [`ValueError`] saying whether the component is missing or cannot apply.
    pub(crate) fn value(
        &self,
        message: &Message,
        request: Option<&Message>,
    ) -> Result<String, ValueError> {
        let source = if self.names_the_request() {
            if message.is_response() {
                request.ok_or_else(|| {
                    ValueError::Missing(format!(
                        "{} is taken from the request: give the request too",
                        self.serialize()
                    ))
                })?
            } else {
                return Err(ValueError::Invalid(format!(
                    "{} has req, but the message is itself a request",
                    self.serialize()
                )));
            }
        } else {
            message
        };
        let name = self.name();
        if name.starts_with('@') {
            return source.derived(name).map_err(ValueError::Invalid);
        }
        let value = source
            .field(name)
            .ok_or_else(|| ValueError::Missing(format!("the message has no {name:?} field")))?;
        match self.key() {
            None => Ok(value),
            Some(key) => dictionary_member(&value, key).ok_or_else(|| {
                ValueError::Missing(format!("field {name:?} has no member {key:?}"))
            }),
        }
    }
}

#[cfg(test)]
fn sf_string(s: &str) -> Result<sfv::String, String> {
    sfv::String::from_string(s.to_string()).map_err(|(e, _)| format!("{s:?}: {e}"))
}

/// One member of a Dictionary field, re-serialized (RFC 9421 2.1.2).
fn dictionary_member(field: &str, key: &str) -> Option<String> {
    let dict: Dictionary = Parser::new(field).parse().ok()?;
    let (k, entry) = dict.get_key_value(key)?;
    match entry {
        // An item serializes on its own (`?1;a=1` for a bare `key;a=1`).
        ListEntry::Item(i) => Some(i.serialize()),
        ListEntry::InnerList(_) => {
            let one: Dictionary = [(k.clone(), entry.clone())].into_iter().collect();
            let text = one.serialize()?;
            text.strip_prefix(&format!("{key}=")).map(str::to_string)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_serializes_identifiers() {
        assert_eq!(
            Component::parse("@method").unwrap().serialize(),
            "\"@method\""
        );
        let c = Component::parse("@method;req").unwrap();
        assert!(c.names_the_request());
        assert_eq!(c.serialize(), "\"@method\";req");
        let s = Component::parse("\"signature\";req;key=\"sig1\"").unwrap();
        assert_eq!(s.key(), Some("sig1"));
        assert_eq!(s.serialize(), "\"signature\";req;key=\"sig1\"");
        for bad in [
            "Content-Type",
            "@query-param;name=\"a\"",
            "x;sf",
            "@method;key=\"a\"",
            "",
            "@signature-params",
        ] {
            assert!(Component::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_from_message_and_request() {
        let request = Message {
            method: Some("GET".into()),
            target_uri: Some("https://rs.example/a".into()),
            fields: vec![("Signature".into(), "sig1=:AAEC:, sig2=:AwQ=:".into())],
            ..Message::default()
        };
        let response = Message {
            status: Some(200),
            fields: vec![("Content-Type".into(), "application/json".into())],
            ..Message::default()
        };
        let v = |c: &str| {
            Component::parse(c)
                .unwrap()
                .value(&response, Some(&request))
        };
        assert_eq!(v("@status").unwrap(), "200");
        assert_eq!(v("content-type").unwrap(), "application/json");
        assert_eq!(v("@method;req").unwrap(), "GET");
        assert_eq!(v("\"signature\";req;key=\"sig2\"").unwrap(), ":AwQ=:");
        assert!(v("\"signature\";req;key=\"sig3\"").is_err());
        assert!(v("authorization").is_err());
        let flags = Message {
            status: Some(200),
            fields: vec![("X-Dict".into(), "a=1, b;p=2, c=(x y)".into())],
            ..Message::default()
        };
        let member = |k: &str| {
            Component::parse(&format!("\"x-dict\";key=\"{k}\""))
                .unwrap()
                .value(&flags, None)
                .unwrap()
        };
        assert_eq!(member("a"), "1");
        assert_eq!(member("b"), "?1;p=2");
        assert_eq!(member("c"), "(x y)");
        assert!(Component::parse("@method;req")
            .unwrap()
            .value(&request, None)
            .is_err());
    }
}
