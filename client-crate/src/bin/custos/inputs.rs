//! What `custos` reads: files, standard input, `-`/`@FILE` secrets, raw HTTP messages.

use super::args::Encrypt;
use super::{usage, Failure};
use custos_client::proto;
use std::io::Read;
use std::path::PathBuf;

pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A token, proof or JWE given on the command line: `-` reads standard
/// input, `@FILE` reads the file (so secrets stay out of `ps` and shell
/// history); anything else is the value itself. Surrounding whitespace is
/// dropped.
pub(crate) fn secret_input(value: String) -> Result<String, Failure> {
    let text = if value == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| usage(format!("cannot read standard input: {e}")))?;
        s
    } else if let Some(path) = value.strip_prefix('@') {
        std::fs::read_to_string(path).map_err(|e| usage(format!("cannot read {path}: {e}")))?
    } else {
        return Ok(value);
    };
    Ok(text.trim().to_string())
}

pub(crate) fn read_file(path: &PathBuf) -> Result<String, Failure> {
    std::fs::read_to_string(path).map_err(|e| usage(format!("cannot read {}: {e}", path.display())))
}

pub(crate) fn encryption(e: &Encrypt) -> Result<Option<proto::Encryption>, Failure> {
    let Some(path) = &e.encrypt_to else {
        return Ok(None);
    };
    let jwk = std::fs::read_to_string(path)
        .map_err(|err| usage(format!("cannot read {}: {err}", path.display())))?;
    Ok(Some(proto::Encryption {
        recipient_jwk: jwk,
        enc: e.enc.clone().unwrap_or_default(),
    }))
}

/// Reads and parses a raw HTTP/1.1 message (standard input when no path).
pub(crate) fn http_message(
    path: Option<&PathBuf>,
) -> Result<custos_client::http::RawMessage, Failure> {
    let bytes = match path {
        Some(p) => {
            std::fs::read(p).map_err(|e| usage(format!("cannot read {}: {e}", p.display())))?
        }
        None => {
            let mut b = Vec::new();
            std::io::stdin()
                .read_to_end(&mut b)
                .map_err(|e| usage(format!("cannot read standard input: {e}")))?;
            b
        }
    };
    custos_client::http::RawMessage::parse(&bytes).map_err(usage)
}

pub(crate) fn read_input(path: Option<&PathBuf>) -> Result<String, Failure> {
    match path {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| usage(format!("cannot read {}: {e}", p.display()))),
        None => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| usage(format!("cannot read standard input: {e}")))?;
            Ok(s)
        }
    }
}
