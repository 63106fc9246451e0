//! An HTTP message as the caller hands it over: a request (method and target
//! URI) or a response (status), its fields, and its body. The derived
//! components of RFC 9421 section 2.2 are computed from it here.

use url::Url;

/// One HTTP request or response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Message {
    /// The request method (`None` for a response).
    pub method: Option<String>,
    /// The absolute target URI of a request (`https://rs.example/accounts?x=1`).
    pub target_uri: Option<String>,
    /// The status code of a response (`None` for a request).
    pub status: Option<u16>,
    /// The header fields, in order, names in any case.
    pub fields: Vec<(String, String)>,
    /// The body, when the message has one.
    pub body: Option<Vec<u8>>,
}

impl Message {
    /// Whether this is a response.
    pub(crate) fn is_response(&self) -> bool {
        self.status.is_some()
    }

    /// The combined value of the field `name` (RFC 9421 2.1): every value
    /// with that name, trimmed, joined with `", "`; `None` when absent.
    pub(crate) fn field(&self, name: &str) -> Option<String> {
        let values: Vec<&str> = self
            .fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim_matches([' ', '\t']))
            .collect();
        (!values.is_empty()).then(|| values.join(", "))
    }

    /// Whether the field `name` is present.
    pub(crate) fn has_field(&self, name: &str) -> bool {
        self.fields
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// Whether the message carries a non-empty body.
    pub(crate) fn has_body(&self) -> bool {
        self.body.as_ref().is_some_and(|b| !b.is_empty())
    }

    /// A derived component's value (RFC 9421 2.2).
    ///
    /// # Errors
    /// A message for a component this message cannot have (`@status` on a
    /// request, `@method` on a response) or a target URI that is not absolute.
    pub(crate) fn derived(&self, name: &str) -> Result<String, String> {
        match name {
            "@status" => self
                .status
                .map(|s| format!("{s:03}"))
                .ok_or_else(|| "@status belongs to responses only".to_string()),
            "@method" => self
                .method
                .clone()
                .ok_or_else(|| "@method belongs to requests only".to_string()),
            "@target-uri" => self
                .target_uri
                .clone()
                .ok_or_else(|| "@target-uri belongs to requests only".to_string()),
            "@authority" | "@scheme" | "@request-target" | "@path" | "@query" => {
                let raw = self
                    .target_uri
                    .as_deref()
                    .ok_or_else(|| format!("{name} belongs to requests only"))?;
                let parts = split_target(raw)?;
                Ok(match name {
                    "@authority" => parts.authority,
                    "@scheme" => parts.scheme,
                    "@path" => parts.path.to_string(),
                    "@query" => format!("?{}", parts.query.unwrap_or_default()),
                    _ => match parts.query {
                        Some(q) => format!("{}?{q}", parts.path),
                        None => parts.path.to_string(),
                    },
                })
            }
            other => Err(format!(
                "derived component {other:?} is not supported (use @method, @target-uri, \
                 @authority, @scheme, @request-target, @path, @query or @status)"
            )),
        }
    }
}

/// The parts of an absolute target URI as RFC 9421 2.2 uses them: the
/// scheme and authority normalised (lower case, default port dropped),
/// path and query exactly as sent (no dot-segment removal or re-encoding).
#[derive(Debug)]
struct Target<'a> {
    scheme: String,
    authority: String,
    path: &'a str,
    query: Option<&'a str>,
}

fn split_target(raw: &str) -> Result<Target<'_>, String> {
    let url =
        Url::parse(raw).map_err(|e| format!("the target URI {raw:?} is not absolute: {e}"))?;
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("the target URI {raw:?} has no host"))?
        .to_ascii_lowercase();
    let authority = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host,
    };
    // Path and query from the raw text: after "scheme://authority".
    let after_scheme = raw
        .split_once("://")
        .map(|(_, rest)| rest)
        .ok_or_else(|| format!("the target URI {raw:?} is not absolute"))?;
    let rest = after_scheme
        .find(['/', '?', '#'])
        .map_or("", |i| &after_scheme[i..]);
    let rest = rest.split('#').next().unwrap_or_default();
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    Ok(Target {
        scheme: url.scheme().to_string(),
        authority,
        path: if path.is_empty() { "/" } else { path },
        query,
    })
}

/// Checks that a request's target URI is an absolute http(s) URI with a host.
///
/// # Errors
/// A message saying what is wrong.
pub(crate) fn check_target_uri(raw: &str) -> Result<(), String> {
    let t = split_target(raw)?;
    if t.scheme != "https" && t.scheme != "http" {
        return Err(format!("the target URI {raw:?} is not http or https"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Message {
        Message {
            method: Some("POST".into()),
            target_uri: Some("https://www.Example.com:443/path?param=value&foo=bar".into()),
            fields: vec![
                ("Host".into(), "www.example.com".into()),
                ("X-Empty".into(), "".into()),
                ("Cache-Control".into(), "  max-age=60 ".into()),
                ("cache-control".into(), "must-revalidate".into()),
            ],
            ..Message::default()
        }
    }

    /// RFC 9421 2.1 and 2.2 examples.
    #[test]
    fn fields_and_derived_components() {
        let m = request();
        assert_eq!(
            m.field("cache-control").unwrap(),
            "max-age=60, must-revalidate"
        );
        assert_eq!(m.field("x-empty").unwrap(), "");
        assert_eq!(m.field("missing"), None);
        assert_eq!(m.derived("@method").unwrap(), "POST");
        assert_eq!(m.derived("@authority").unwrap(), "www.example.com");
        assert_eq!(m.derived("@scheme").unwrap(), "https");
        assert_eq!(m.derived("@path").unwrap(), "/path");
        assert_eq!(m.derived("@query").unwrap(), "?param=value&foo=bar");
        assert_eq!(
            m.derived("@request-target").unwrap(),
            "/path?param=value&foo=bar"
        );
        assert!(m.derived("@status").is_err());
        // Path and query stay exactly as sent.
        let raw = Message {
            target_uri: Some("https://a.example/x/../y%2fz?b=%7e&a".into()),
            ..Message::default()
        };
        assert_eq!(raw.derived("@path").unwrap(), "/x/../y%2fz");
        assert_eq!(raw.derived("@query").unwrap(), "?b=%7e&a");
        assert!(check_target_uri("urn:x:y").is_err());
        assert!(check_target_uri("ftp://a.example/").is_err());
        assert!(check_target_uri("https://a.example").is_ok());
        assert!(m.derived("@query-param").is_err());
        let no_query = Message {
            target_uri: Some("http://www.example.com:8080/".into()),
            ..Message::default()
        };
        assert_eq!(no_query.derived("@query").unwrap(), "?");
        assert_eq!(
            no_query.derived("@authority").unwrap(),
            "www.example.com:8080"
        );
        let response = Message {
            status: Some(200),
            ..Message::default()
        };
        assert_eq!(response.derived("@status").unwrap(), "200");
        assert!(response.derived("@method").is_err());
    }
}
