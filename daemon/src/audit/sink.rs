//! Where audit lines go: a file (appended, mode 0600, never through a
//! symlink), standard output, or datagrams to syslog or journald.

use std::io::Write;

pub(super) enum Sink {
    Stdout,
    File(std::path::PathBuf, std::fs::File),
    /// RFC 5424 over a Unix datagram socket (`/dev/log`).
    Syslog(std::os::unix::net::UnixDatagram, std::path::PathBuf),
    /// systemd-journald's native protocol.
    Journal(std::os::unix::net::UnixDatagram, std::path::PathBuf),
}

/// Sends each line as one datagram: an RFC 5424 message (facility authpriv,
/// severity info; the JSON line as its message) or a journal entry
/// (`MESSAGE=` the JSON line, `SYSLOG_IDENTIFIER=custosd`, `CUSTOS_AUDIT=1`).
pub(super) fn send_datagrams(
    socket: &std::os::unix::net::UnixDatagram,
    path: &std::path::Path,
    text: &str,
    journal: bool,
) -> std::io::Result<()> {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty() && h.is_ascii() && !h.contains(' '))
        .unwrap_or_else(|| "-".into());
    let pid = std::process::id();
    for line in text.lines() {
        let datagram = if journal {
            format!("MESSAGE={line}\nSYSLOG_IDENTIFIER=custosd\nSYSLOG_PID={pid}\nPRIORITY=6\nCUSTOS_AUDIT=1\n")
        } else {
            // PRI 86 = authpriv (10) * 8 + info (6); APP-NAME custosd, MSGID audit.
            format!(
                "<86>1 {} {host} custosd {pid} audit - {line}",
                rfc3339_now()
            )
        };
        // A restarted syslog daemon or journald has a new socket: reconnect once.
        socket.send(datagram.as_bytes()).or_else(|_| {
            socket
                .connect(path)
                .and_then(|()| socket.send(datagram.as_bytes()))
        })?;
    }
    Ok(())
}

/// Opens the audit file for appending: created with mode 0600, never through a symlink.
pub(super) fn open_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
}

impl Sink {
    /// Opens the file again (after logrotate moved it); the old one stays
    /// in use when that fails.
    pub(super) fn reopen(&mut self) -> bool {
        match self {
            Sink::Stdout | Sink::Syslog(..) | Sink::Journal(..) => true,
            Sink::File(path, file) => match open_file(path) {
                Ok(f) => {
                    *file = f;
                    true
                }
                Err(e) => {
                    tracing::error!(error = %e, file = %path.display(),
                        "cannot reopen the audit file; still writing to the old one");
                    false
                }
            },
        }
    }
}

/// Writes `text` to the sink in one go.
pub(super) fn put(sink: &mut Sink, fsync: bool, text: &str) -> std::io::Result<()> {
    match sink {
        Sink::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes()).and_then(|()| out.flush())
        }
        Sink::Syslog(s, path) => send_datagrams(s, path, text, false),
        Sink::Journal(s, path) => send_datagrams(s, path, text, true),
        Sink::File(_, f) => {
            f.write_all(text.as_bytes())
                .and_then(|()| if fsync { f.sync_data() } else { Ok(()) })
        }
    }
}

/// The current UTC time as RFC 3339 with milliseconds.
pub(super) fn rfc3339_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_millis()
    )
}
