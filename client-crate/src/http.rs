//! Raw HTTP/1.1 messages for HTTP message signatures: parse a request or
//! response as written on the wire into a [`proto::HttpMessage`], and write
//! it back with the signature fields added (what `custos sign http` prints).

use crate::proto;

/// A raw HTTP/1.1 message split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    /// The start line (`GET /x HTTP/1.1` or `HTTP/1.1 200 OK`).
    pub start_line: String,
    /// Header fields in order.
    pub fields: Vec<(String, String)>,
    /// The body (cut to Content-Length when that field is present).
    pub body: Vec<u8>,
    /// Whether the input used CRLF line endings.
    pub crlf: bool,
}

impl RawMessage {
    /// Parses a raw HTTP/1.1 request or response.
    ///
    /// # Errors
    /// A message saying what is malformed.
    pub fn parse(raw: &[u8]) -> Result<Self, String> {
        // The head ends at the first blank line, whichever line ending it uses.
        let crlf_end = find(raw, b"\r\n\r\n").map(|i| (i, 4));
        let lf_end = find(raw, b"\n\n").map(|i| (i, 2));
        let (head_end, sep_len) = match (crlf_end, lf_end) {
            (Some(a), Some(b)) => {
                if a.0 <= b.0 {
                    a
                } else {
                    b
                }
            }
            (a, b) => a.or(b).unwrap_or((raw.len(), 0)),
        };
        let head = std::str::from_utf8(&raw[..head_end])
            .map_err(|_| "the message head is not UTF-8 text".to_string())?;
        let crlf = head.contains("\r\n");
        let mut lines = head.lines();
        let start_line = lines
            .next()
            .filter(|l| !l.trim().is_empty())
            .ok_or("the message is empty")?
            .trim_end()
            .to_string();
        let mut fields = Vec::new();
        for line in lines {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| format!("header line {line:?} has no colon"))?;
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(format!("header name {name:?} is not valid"));
            }
            fields.push((name.to_string(), value.trim().to_string()));
        }
        if fields.iter().any(|(n, v)| {
            n.eq_ignore_ascii_case("transfer-encoding") && !v.eq_ignore_ascii_case("identity")
        }) {
            return Err(
                "Transfer-Encoding is not supported: give the message with its decoded body and a Content-Length".into(),
            );
        }
        let mut body = raw[(head_end + sep_len).min(raw.len())..].to_vec();
        if let Some((_, len)) = fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        {
            let len: usize = len
                .parse()
                .map_err(|_| format!("Content-Length {len:?} is not a number"))?;
            if len > body.len() {
                return Err(format!(
                    "Content-Length is {len} but the body has {} bytes",
                    body.len()
                ));
            }
            body.truncate(len);
        }
        Ok(Self {
            start_line,
            fields,
            body,
            crlf,
        })
    }

    /// The message for the daemon; a request's target URI is built from
    /// `scheme`, the Host field and the request target (unless absolute).
    ///
    /// # Errors
    /// A message for a start line that is neither a request nor a response.
    pub fn to_proto(&self, scheme: &str) -> Result<proto::HttpMessage, String> {
        let parts: Vec<&str> = self.start_line.split_whitespace().collect();
        let fields = self
            .fields
            .iter()
            .map(|(n, v)| proto::HttpField {
                name: n.clone(),
                value: v.clone(),
            })
            .collect();
        match parts.as_slice() {
            [version, status, ..] if version.starts_with("HTTP/") => {
                let status: u32 = status
                    .parse()
                    .map_err(|_| format!("status {status:?} is not a number"))?;
                Ok(proto::HttpMessage {
                    status,
                    fields,
                    body: self.body.clone(),
                    ..Default::default()
                })
            }
            [method, target, version] if version.starts_with("HTTP/") => {
                let target_uri = if target.starts_with("http://") || target.starts_with("https://")
                {
                    (*target).to_string()
                } else if !target.starts_with('/') {
                    return Err(format!(
                        "request target {target:?} is neither an absolute URI nor a path starting with /"
                    ));
                } else {
                    let host = self
                        .fields
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case("host"))
                        .map(|(_, v)| v.as_str())
                        .ok_or("a request needs a Host field to build its target URI")?;
                    format!("{scheme}://{host}{target}")
                };
                Ok(proto::HttpMessage {
                    method: (*method).to_string(),
                    target_uri,
                    fields,
                    body: self.body.clone(),
                    ..Default::default()
                })
            }
            _ => Err(format!(
                "start line {:?} is neither a request nor a response",
                self.start_line
            )),
        }
    }

    /// The message as bytes, with `extra` fields appended after the others.
    pub fn render(&self, extra: &[(&str, &str)]) -> Vec<u8> {
        let eol = if self.crlf { "\r\n" } else { "\n" };
        let mut out = String::new();
        out.push_str(&self.start_line);
        out.push_str(eol);
        for (n, v) in self
            .fields
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .chain(extra.iter().copied())
        {
            out.push_str(n);
            out.push_str(": ");
            out.push_str(v);
            out.push_str(eol);
        }
        out.push_str(eol);
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_response() {
        let raw = b"POST /foo?param=Value&Pet=dog HTTP/1.1\r\nHost: example.com\r\nContent-Type: application/json\r\nContent-Length: 18\r\n\r\n{\"hello\": \"world\"}\r\n";
        let m = RawMessage::parse(raw).unwrap();
        assert!(m.crlf);
        assert_eq!(m.body, b"{\"hello\": \"world\"}");
        let p = m.to_proto("https").unwrap();
        assert_eq!(p.method, "POST");
        assert_eq!(p.target_uri, "https://example.com/foo?param=Value&Pet=dog");
        let out = m.render(&[("Signature", "sig1=:AA==:")]);
        let again = RawMessage::parse(&out).unwrap();
        assert_eq!(again.fields.last().unwrap().0, "Signature");
        assert_eq!(again.body, m.body);

        let r = RawMessage::parse(b"HTTP/1.1 200 OK\nContent-Type: text/plain\n\nhi").unwrap();
        let p = r.to_proto("https").unwrap();
        assert_eq!(p.status, 200);
        assert_eq!(p.body, b"hi");
        assert!(RawMessage::parse(b"").is_err());
        assert!(RawMessage::parse(b"GET / HTTP/1.1\nbroken\n\n").is_err());
        assert!(RawMessage::parse(b"GET / HTTP/1.1\n\n")
            .unwrap()
            .to_proto("https")
            .is_err());
        // An LF message whose body holds CRLFCRLF ends its head at the first blank line.
        let m = RawMessage::parse(b"POST /a HTTP/1.1\nHost: h\n\n\"a\": 1\r\n\r\nx").unwrap();
        assert_eq!(m.fields.len(), 1);
        assert!(RawMessage::parse(
            b"POST /a HTTP/1.1\nHost: h\nTransfer-Encoding: chunked\n\n1\r\na\r\n0\r\n\r\n"
        )
        .is_err());
        assert!(
            RawMessage::parse(b"GET .evil.com/x HTTP/1.1\nHost: example.com\n\n")
                .unwrap()
                .to_proto("https")
                .is_err()
        );
    }
}
