//! Reading files the daemon trusts (its config, PIN files, the TLS key):
//! each is opened once, without following a symlink in its last component
//! (`O_NOFOLLOW`), and checked on the open descriptor, so what is checked is
//! what is read (no check-then-read race).
//!
//! The rules: a regular file, owned by root or by custosd's own user, that
//! neither group nor others can write; a secret file that group and others
//! cannot read either.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use zeroize::Zeroizing;

/// How private a file must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A config file: no group or other write.
    Config,
    /// A secret (PIN, key): no group or other access at all.
    Secret,
}

/// Opens `path` under the rules for `kind` and returns its bytes (wiped when dropped).
///
/// # Errors
/// A message naming the file, the rule it breaks and the fix.
pub(crate) fn read_trusted(path: &Path, kind: Kind) -> Result<Zeroizing<Vec<u8>>, String> {
    let shown = path.display();
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(nix::libc::ELOOP) {
                format!("{shown} is a symbolic link; name the file itself")
            } else {
                format!("cannot read {shown}: {e}")
            }
        })?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot inspect {shown}: {e}"))?;
    check(&meta, kind).map_err(|why| format!("{shown} {why}"))?;
    let mut bytes = Zeroizing::new(Vec::new());
    file.read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    Ok(bytes)
}

/// The ownership and mode rules on an open file's metadata.
fn check(meta: &std::fs::Metadata, kind: Kind) -> Result<(), String> {
    if !meta.file_type().is_file() {
        return Err("is not a regular file".into());
    }
    let own = nix::unistd::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != own {
        return Err(format!(
            "belongs to uid {}, not to root or custosd's user (uid {own}); whoever owns it can change it: chown it",
            meta.uid()
        ));
    }
    let mode = meta.mode();
    match kind {
        Kind::Config if mode & 0o022 != 0 => {
            Err("is writable by group or others; run `chmod go-w` on it".into())
        }
        Kind::Secret if mode & 0o077 != 0 => {
            Err("is accessible by group or others; run `chmod 600` on it".into())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn symlinks_modes_and_owners() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pin");
        std::fs::write(&f, "1234").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(&read_trusted(&f, Kind::Secret).unwrap()[..], b"1234");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        let e = read_trusted(&link, Kind::Secret).unwrap_err();
        assert!(e.contains("symbolic link"), "{e}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(read_trusted(&f, Kind::Secret)
            .unwrap_err()
            .contains("chmod 600"));
        assert!(read_trusted(&f, Kind::Config).is_ok());
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o620)).unwrap();
        assert!(read_trusted(&f, Kind::Config).unwrap_err().contains("go-w"));
        assert!(read_trusted(dir.path(), Kind::Config).is_err());
        if nix::unistd::geteuid().is_root() {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
            nix::unistd::chown(&f, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
            let e = read_trusted(&f, Kind::Secret).unwrap_err();
            assert!(e.contains("belongs to uid 65534"), "{e}");
        }
    }
}
