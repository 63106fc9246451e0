//! The audit log's hash chain. Every line carries `seq` (1, 2, ...) and
//! `prev`, the SHA-256 (hex) of the line before it as written (without its
//! newline; 64 zeros before the first), so a line edited, deleted, inserted
//! or moved breaks the chain at that point. A checkpoint line
//! (`operation: "audit_checkpoint"`) carries a JWS signed by the audit
//! keyset's key over `{"seq": N, "head": H}`: the seq and hash of the line
//! before it, which seals every line up to there. `custos audit verify`
//! checks both with the published audit key.
//!
//! The chain goes on across files: after logrotate's reopen the next line's
//! `prev` is the last line of the old file; at start custosd takes the head
//! from the last line of the file, or from `state_dir/audit-chain` when the
//! file is empty (rotated while custosd was stopped).

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// The hex of the hash before the first line.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The `typ` of a checkpoint's JWS.
pub(crate) const CHECKPOINT_TYP: &str = "custos-audit-checkpoint+jwt";

/// Where the chain stands: the last line's seq and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// The seq of the last line written (0: none yet).
    pub seq: u64,
    /// Its SHA-256, hex.
    pub head: String,
}

impl Default for Chain {
    fn default() -> Self {
        Self {
            seq: 0,
            head: GENESIS.to_string(),
        }
    }
}

impl Chain {
    /// Adds `seq` and `prev` to each JSON-object line of `text` (as the
    /// writer is about to write them) and moves the chain on.
    pub fn link(&mut self, text: &str) -> String {
        let mut out = String::with_capacity(text.len() + 96 * text.lines().count());
        for line in text.lines().filter(|l| !l.is_empty()) {
            let body = line.strip_suffix('}').unwrap_or(line);
            let sep = if body.ends_with('{') { "" } else { "," };
            self.seq += 1;
            let linked = format!(
                "{body}{sep}\"seq\":{},\"prev\":\"{}\"}}",
                self.seq, self.head
            );
            self.head = hex::encode(Sha256::digest(linked.as_bytes()));
            out.push_str(&linked);
            out.push('\n');
        }
        out
    }

    /// The chain after `line` (a line as written), if it carries a seq.
    pub fn after(line: &str) -> Option<Self> {
        let v: Value = serde_json::from_str(line).ok()?;
        Some(Self {
            seq: v.get("seq")?.as_u64()?,
            head: hex::encode(Sha256::digest(line.as_bytes())),
        })
    }

    /// Where to go on from: the last line of `file`, else the saved state,
    /// else the start.
    pub fn resume(file: Option<&Path>, state: Option<&Path>) -> Self {
        if let Some(c) = file.and_then(last_line).and_then(|l| Self::after(&l)) {
            return c;
        }
        state
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| {
                let (seq, head) = t.trim().split_once(' ')?;
                Some(Self {
                    seq: seq.parse().ok()?,
                    head: head.to_string(),
                })
            })
            .filter(|c| c.head.len() == 64 && c.head.bytes().all(|b| b.is_ascii_hexdigit()))
            .unwrap_or_default()
    }

    /// Saves the chain's head (written whole, then renamed).
    pub fn save(&self, state: &Path) {
        let tmp = state.with_extension("tmp");
        let ok = std::fs::write(&tmp, format!("{} {}\n", self.seq, self.head))
            .and_then(|()| std::fs::rename(&tmp, state));
        if let Err(e) = ok {
            tracing::warn!(error = %e, file = %state.display(), "cannot save the audit chain's head");
        }
    }
}

/// The last non-empty line of a file (read from its last 64 KiB).
fn last_line(path: &Path) -> Option<String> {
    let f = std::fs::File::open(path).ok()?;
    let meta = f.metadata().ok()?;
    // Only a regular file has a last line (a device such as /dev/full reads forever).
    if !meta.is_file() {
        return None;
    }
    let start = meta.len().saturating_sub(64 * 1024);
    let mut f = f;
    f.seek(SeekFrom::Start(start)).ok()?;
    let mut tail = Vec::new();
    f.take(64 * 1024).read_to_end(&mut tail).ok()?;
    // The window may start inside a character of an earlier line; the last
    // line itself is whole.
    let last = tail
        .split(|&b| b == b'\n')
        .rev()
        .find(|l| !l.iter().all(u8::is_ascii_whitespace))?;
    String::from_utf8(last.to_vec()).ok()
}

/// The claims a checkpoint's JWS signs: the seq and hash of the line
/// before the checkpoint, and when.
pub(crate) fn checkpoint_claims(chain: &Chain, iat: i64) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("iss".into(), json!("custosd"));
    m.insert("seq".into(), json!(chain.seq));
    m.insert("head".into(), json!(chain.head));
    m.insert("iat".into(), json!(iat));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_chained_and_the_chain_resumes_from_the_last_line() {
        let mut c = Chain::default();
        let text = c.link("{\"a\":1}\n{\"b\":2}\n{}\n");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        let first: Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(first["seq"], 1);
        assert_eq!(first["prev"], GENESIS);
        let second: Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(
            second["prev"],
            hex::encode(Sha256::digest(lines[0].as_bytes()))
        );
        let third: Value = serde_json::from_str(lines[2]).unwrap();
        assert_eq!(third["seq"], 3);
        assert_eq!(Chain::after(lines[2]).unwrap(), c);

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("audit.jsonl");
        std::fs::write(&file, &text).unwrap();
        assert_eq!(Chain::resume(Some(&file), None), c);
        let state = dir.path().join("audit-chain");
        c.save(&state);
        std::fs::write(&file, "").unwrap();
        assert_eq!(Chain::resume(Some(&file), Some(&state)), c);
        assert_eq!(Chain::resume(None, None), Chain::default());
    }

    #[test]
    fn a_device_or_a_window_inside_a_character_does_not_stop_the_resume() {
        // /dev/full reads zeros forever: not a file to take a last line from.
        assert_eq!(
            Chain::resume(Some(Path::new("/dev/full")), None),
            Chain::default()
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("audit.jsonl");
        let mut c = Chain::default();
        // Put a two-byte character across the start of the last 64 KiB.
        let pad = "é".repeat(40 * 1024);
        let mut text = c.link(&format!("{{\"detail\":\"{pad}\"}}\n{{\"b\":1}}\n"));
        if text.is_char_boundary(text.len() - 64 * 1024) {
            text.insert(0, ' ');
        }
        assert!(!text.is_char_boundary(text.len() - 64 * 1024));
        std::fs::write(&file, text).unwrap();
        assert_eq!(Chain::resume(Some(&file), None), c);
    }
}
