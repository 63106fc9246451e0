//! The persisted keyring manifest: `STATE_DIR/keyring.json`.
//!
//! Written atomically (temporary file, fsync, rename, fsync of the directory)
//! with a generation number that grows by one per write, so a crash at any
//! instant leaves either the old or the new manifest, never a mix.

use super::keyset::Keyset;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The manifest's format version.
const FORMAT: u32 = 1;

/// Every keyset, with the write generation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format of this file.
    pub format: u32,
    /// Incremented on every write.
    pub generation: u64,
    /// Keysets by name.
    pub keysets: BTreeMap<String, Keyset>,
    /// Dual-control requests by id (pending, and decided ones kept for the record).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, super::requests::Request>,
}

/// The manifest's path inside `state_dir`.
pub(crate) fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("keyring.json")
}

/// Reads the manifest, or an empty one when none was written yet.
///
/// # Errors
/// `Internal` with the path when the file exists but cannot be read or parsed.
pub(crate) fn load(state_dir: &Path) -> Result<Manifest> {
    let p = path(state_dir);
    let text = match std::fs::read(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Manifest {
                format: FORMAT,
                ..Manifest::default()
            })
        }
        Err(e) => return Err(Error::Internal(format!("cannot read {}: {e}", p.display()))),
    };
    parse(&text, &p.display().to_string())
}

/// An empty manifest of the current format.
pub(crate) fn empty() -> Manifest {
    Manifest {
        format: FORMAT,
        ..Manifest::default()
    }
}

/// Parses a manifest read from `origin` (a file, an etcd key).
///
/// # Errors
/// `Internal` naming `origin` when it is damaged or of another format.
pub(crate) fn parse(bytes: &[u8], origin: &str) -> Result<Manifest> {
    let m: Manifest = serde_json::from_slice(bytes).map_err(|e| {
        Error::Internal(format!(
            "keyring manifest {origin} is damaged ({e}); restore it from backup"
        ))
    })?;
    if m.format != FORMAT {
        return Err(Error::Internal(format!(
            "keyring manifest {origin} has format {}, this custosd reads format {FORMAT}",
            m.format
        )));
    }
    Ok(m)
}

/// The manifest as stored (pretty JSON).
///
/// # Errors
/// `Internal` when it cannot be serialized.
pub(crate) fn to_bytes(m: &Manifest) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(m)
        .map_err(|e| Error::Internal(format!("serializing the manifest: {e}")))
}

/// Writes the manifest atomically.
///
/// # Errors
/// `Internal` naming the file when any step fails; the previous manifest is then intact.
pub(crate) fn store(state_dir: &Path, m: &Manifest) -> Result<()> {
    let p = path(state_dir);
    let tmp = state_dir.join(format!(".keyring.json.{}.tmp", std::process::id()));
    let io = |e: std::io::Error| Error::Internal(format!("writing {}: {e}", p.display()));
    let bytes = to_bytes(m)?;
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        f.write_all(&bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, &p).map_err(io)?;
    std::fs::File::open(state_dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_then_load_round_trips_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let empty = load(dir.path()).unwrap();
        assert_eq!(empty.generation, 0);
        let m = Manifest {
            format: FORMAT,
            generation: 7,
            ..Manifest::default()
        };
        store(dir.path(), &m).unwrap();
        assert_eq!(load(dir.path()).unwrap(), m);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("keyring.json")]);
    }

    #[test]
    fn damaged_manifest_is_an_error_not_an_empty_keyring() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(path(dir.path()), b"{not json").unwrap();
        assert!(matches!(load(dir.path()), Err(Error::Internal(_))));
    }
}
