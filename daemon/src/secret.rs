//! Secrets (PINs, auth values): where they come from and how they are held.
//!
//! A secret is named in the config by its source, never by its value:
//! `env:NAME` or `file:PATH`. The value is held in a zeroizing buffer, wiped
//! on drop, and its `Debug` output is redacted.

use std::fmt;
use zeroize::Zeroizing;

/// A secret value (PIN or auth value), zeroized when dropped and never printed.
#[derive(Clone)]
pub(crate) struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a value already in memory (tests, `--dev`).
    pub(crate) fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    /// Resolves a source of the form `env:NAME` or `file:PATH`.
    ///
    /// # Errors
    /// A message naming the source (never the value) when it is malformed,
    /// the variable is unset, or the file cannot be read or is readable by
    /// group or others.
    pub(crate) fn from_source(source: &str) -> Result<Self, String> {
        if let Some(name) = source.strip_prefix("env:") {
            if let Some(taken) = taken().lock().unwrap_or_else(|p| p.into_inner()).get(name) {
                return Ok(taken.clone());
            }
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
            let raw =
                crate::files::read_trusted(std::path::Path::new(path), crate::files::Kind::Secret)
                    .map_err(|e| format!("secret source {source:?}: {e}"))?;
            let text = std::str::from_utf8(&raw)
                .map_err(|_| format!("secret source {source:?}: the file is not UTF-8"))?;
            return Ok(Self::new(text.trim_end_matches(['\r', '\n']).to_string()));
        }
        Err(format!(
            "secret source must be \"env:NAME\", \"file:PATH\" or \"systemd-creds:NAME\", not a literal value (got a value of {} characters)",
            source.len()
        ))
    }

    /// The secret's value, for handing to the device library only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

/// Secrets taken out of the environment by [`take_from_environment`].
fn taken() -> &'static std::sync::Mutex<std::collections::HashMap<String, Secret>> {
    static TAKEN: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<String, Secret>>> =
        std::sync::OnceLock::new();
    TAKEN.get_or_init(Default::default)
}

/// Moves the named variables out of the process environment into memory,
/// where `env:NAME` sources find them: the value is overwritten in place
/// (so `/proc/PID/environ` no longer shows it) and the variable is removed
/// (so no child process inherits it).
///
/// Call from `main` before any thread starts: the environment is not
/// thread-safe to change.
pub fn take_from_environment(names: &[String]) {
    for name in names {
        let Ok(value) = std::env::var(name) else {
            continue;
        };
        taken()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.clone(), Secret::new(value));
        let Ok(c_name) = std::ffi::CString::new(name.as_str()) else {
            std::env::remove_var(name);
            continue;
        };
        // SAFETY: no other thread runs yet (the caller's contract), so
        // nothing reads or changes the environment meanwhile. `getenv`
        // returns a pointer to the value inside its writable, NUL-terminated
        // `NAME=VALUE` entry; the variable is removed from the environment
        // first, then its entry's bytes (the name and `=` before the pointer
        // only when they are there) are overwritten in place, within the
        // entry's own length. The memory stays valid: the C library does not
        // free environment strings on unsetenv.
        #[allow(unsafe_code)]
        unsafe {
            let value = nix::libc::getenv(c_name.as_ptr());
            std::env::remove_var(name);
            if !value.is_null() {
                let len = nix::libc::strlen(value);
                let prefix = name.len() + 1;
                let entry = value.cast::<u8>().wrapping_sub(prefix);
                let named = std::slice::from_raw_parts(entry, prefix);
                if named.strip_suffix(b"=") == Some(name.as_bytes()) {
                    std::ptr::write_bytes(entry, 0, prefix + len);
                } else {
                    std::ptr::write_bytes(value, 0, len);
                }
            }
        }
    }
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
