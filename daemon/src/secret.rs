//! Secrets (PINs, auth values): where they come from and how they are held.
//!
//! A secret is named in the config by its source, never by its value:
//! `env:NAME` or `file:PATH`. The value is held in a zeroizing buffer, wiped
//! on drop, and its `Debug` output is redacted.

use std::fmt;
use zeroize::Zeroizing;

/// A secret value (PIN or auth value), zeroized when dropped and never printed.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a value already in memory (tests, `--dev`).
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    /// Resolves a source of the form `env:NAME` or `file:PATH`.
    ///
    /// # Errors
    /// A message naming the source (never the value) when it is malformed,
    /// the variable is unset, or the file cannot be read or is readable by
    /// group or others.
    pub fn from_source(source: &str) -> Result<Self, String> {
        if let Some(name) = source.strip_prefix("env:") {
            let value = std::env::var(name).map_err(|_| {
                format!("secret source {source:?}: environment variable {name} is not set")
            })?;
            return Ok(Self::new(value));
        }
        if let Some(name) = source.strip_prefix("systemd-creds:") {
            // systemd's LoadCredential=/SetCredentialEncrypted= put credentials
            // in $CREDENTIALS_DIRECTORY, readable only by the service.
            let dir = std::env::var("CREDENTIALS_DIRECTORY").map_err(|_| {
                format!("secret source {source:?}: $CREDENTIALS_DIRECTORY is not set (not started by systemd with LoadCredential=)")
            })?;
            if name.is_empty() || name.contains('/') {
                return Err(format!("secret source {source:?}: bad credential name"));
            }
            return Self::from_source(&format!("file:{dir}/{name}"));
        }
        if let Some(path) = source.strip_prefix("file:") {
            check_private_file(std::path::Path::new(path))
                .map_err(|e| format!("secret source {source:?}: {e}"))?;
            let raw = Zeroizing::new(
                std::fs::read_to_string(path)
                    .map_err(|e| format!("secret source {source:?}: cannot read {path}: {e}"))?,
            );
            return Ok(Self::new(raw.trim_end_matches(['\r', '\n']).to_string()));
        }
        Err(format!(
            "secret source must be \"env:NAME\", \"file:PATH\" or \"systemd-creds:NAME\", not a literal value (got a value of {} characters)",
            source.len()
        ))
    }

    /// The secret's value, for handing to the device library only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Refuses a secret file (PIN, TLS key) that group or others can read or write.
///
/// # Errors
/// A message with the fix.
pub fn check_private_file(path: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "{} is accessible by group or others; run `chmod 600 {}`",
            path.display(),
            path.display()
        ));
    }
    Ok(())
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("123456".into());
        assert!(!format!("{s:?}").contains("123456"));
    }

    #[test]
    fn literal_values_are_refused_without_echoing_them() {
        let err = Secret::from_source("hunter2").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn group_readable_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pin");
        std::fs::write(&p, "1234\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = Secret::from_source(&format!("file:{}", p.display())).unwrap_err();
        assert!(err.contains("chmod 600"), "{err}");
        assert!(!err.contains("1234"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let s = Secret::from_source(&format!("file:{}", p.display())).unwrap();
        assert_eq!(s.expose(), "1234");
    }
}
