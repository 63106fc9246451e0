//! `[audit]` and `[dual_control]`: the evidence settings.

use serde::Deserialize;

/// The checked `[dual_control]` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DualControl {
    /// Operations held back (`destroy`, `disable`, `set_policy`).
    pub operations: Vec<String>,
    /// Distinct approvers needed besides the requester.
    pub approvals: u32,
    /// Seconds a request stays open.
    pub ttl: i64,
}

impl DualControl {
    /// Whether `kind` is held back.
    pub fn guards(&self, kind: &str) -> bool {
        self.operations.iter().any(|o| o == kind)
    }
}

/// `[dual_control]`: operations that need other people's approval.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DualControlConfig {
    /// Which operations are held back: `destroy`, `disable`, `set_policy`.
    pub operations: Vec<String>,
    /// Distinct approvers needed besides the requester (at least 1).
    pub approvals: u32,
    /// How long a request stays open (`"24h"`).
    pub ttl: String,
}

impl Default for DualControlConfig {
    fn default() -> Self {
        Self {
            operations: Vec::new(),
            approvals: 1,
            ttl: "24h".into(),
        }
    }
}

impl DualControlConfig {
    /// The checked settings, or `None` when no operation is held back.
    ///
    /// # Errors
    /// An unknown operation, zero approvals, or a bad ttl.
    pub fn checked(&self) -> Result<Option<DualControl>, String> {
        if self.operations.is_empty() {
            return Ok(None);
        }
        for op in &self.operations {
            if !matches!(op.as_str(), "destroy" | "disable" | "set_policy") {
                return Err(format!(
                    "[dual_control] operations: {op:?} is not destroy, disable or set_policy"
                ));
            }
        }
        if self.approvals == 0 {
            return Err("[dual_control] approvals must be at least 1".into());
        }
        let ttl = crate::duration::parse_duration(&self.ttl)
            .map_err(|e| format!("[dual_control] ttl: {e}"))?;
        if !(1..=30 * 86_400).contains(&ttl) {
            return Err("[dual_control] ttl must be between 1s and 30d".into());
        }
        Ok(Some(DualControl {
            operations: self.operations.clone(),
            approvals: self.approvals,
            ttl,
        }))
    }
}

/// `[audit]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Where lines go: `"file"` (default: `file`), `"syslog"` (RFC 5424
    /// datagrams to `/dev/log`) or `"journal"` (systemd-journald's native
    /// protocol); the same JSON fields in each.
    pub sink: String,
    /// The datagram socket of `syslog` or `journal` when not the system's
    /// (`/dev/log`, `/run/systemd/journal/socket`).
    pub socket: Option<String>,
    /// `"stdout"` or a file path (appended to), for sink `file`.
    pub file: String,
    /// fsync after every line.
    pub fsync: bool,
    /// When the audit line cannot be written, fail the operation (default true).
    pub required: bool,
    /// Lines the writer thread's queue holds (10000); a required line that
    /// finds it full fails its operation, an optional one is dropped.
    pub queue_lines: usize,
    /// How long a required operation waits for its line to be written (`"5s"`).
    pub write_timeout: String,
    /// The keyset (purpose `audit`) whose key signs the checkpoints that
    /// seal the hash chain; none: the chain is written, never sealed.
    pub keyset: Option<String>,
    /// How often a checkpoint is written (`"60s"`); one is also written at shutdown.
    pub checkpoint_every: String,
    /// Where the chain's head is kept between runs (set by custosd to
    /// `state_dir/audit-chain`, for a file that logrotate emptied).
    #[serde(skip)]
    pub chain_state: Option<std::path::PathBuf>,
}

impl AuditConfig {
    /// The datagram socket for sink `syslog` or `journal`; `None` for `file`.
    ///
    /// # Errors
    /// An unknown sink.
    pub fn datagram_socket(&self) -> Result<Option<String>, String> {
        let default = match self.sink.as_str() {
            "file" => return Ok(None),
            "syslog" => "/dev/log",
            "journal" => "/run/systemd/journal/socket",
            other => {
                return Err(format!(
                    "[audit] sink {other:?} is not file, syslog or journal"
                ))
            }
        };
        Ok(Some(self.socket.clone().unwrap_or_else(|| default.into())))
    }

    /// `write_timeout`, checked.
    ///
    /// # Errors
    /// A message naming the setting.
    pub fn write_timeout(&self) -> Result<std::time::Duration, String> {
        match crate::duration::parse_duration(&self.write_timeout) {
            Ok(s) if (1..=3600).contains(&s) => {
                Ok(std::time::Duration::from_secs(s.unsigned_abs()))
            }
            Ok(_) => Err(format!(
                "[audit] write_timeout {:?} must be between 1s and 1h",
                self.write_timeout
            )),
            Err(e) => Err(format!("[audit] write_timeout: {e}")),
        }
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            sink: "file".into(),
            socket: None,
            file: "stdout".into(),
            fsync: false,
            required: true,
            queue_lines: 10_000,
            write_timeout: "5s".into(),
            keyset: None,
            checkpoint_every: "60s".into(),
            chain_state: None,
        }
    }
}
