//! The Unix socket (bound with a checked directory, mode and group) and the
//! signals that stop the daemon.

use crate::config::ServerConfig;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Binds the Unix socket with the configured mode and group: a stale socket
/// file is replaced, a live one (another daemon answering) is an error, and
/// a world-writable socket directory is refused.
pub(super) fn bind(server: &ServerConfig) -> Result<tokio::net::UnixListener, String> {
    let path = &server.socket;
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(format!(
                "another process is already serving on {}; stop it or choose another [server] socket",
                path.display()
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| format!("cannot remove stale socket {}: {e}", path.display()))?;
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    let dir = std::fs::metadata(parent)
        .map_err(|e| format!("cannot inspect {}: {e}", parent.display()))?;
    let dir_mode = dir.permissions().mode();
    if dir_mode & 0o002 != 0 {
        return Err(format!(
            "the socket directory {} is world-writable; put the socket in a directory only custosd's user (and group) can write, e.g. /run/custos",
            parent.display()
        ));
    }
    let socket_gid = server.socket_group.as_deref().map(group_id).transpose()?;
    // Whoever can write the directory can replace the socket with their own.
    let own_uid = nix::unistd::geteuid().as_raw();
    if dir.uid() != 0 && dir.uid() != own_uid {
        return Err(format!(
            "the socket directory {} belongs to uid {}, not to custosd's user or root; \
             whoever owns it can replace the socket",
            parent.display(),
            dir.uid()
        ));
    }
    if dir_mode & 0o020 != 0 && socket_gid.map(|g| g.as_raw()) != Some(dir.gid()) {
        return Err(format!(
            "the socket directory {} is group-writable (gid {}); make it writable only by \
             custosd's user (chmod g-w), or by the [server] socket_group",
            parent.display(),
            dir.gid()
        ));
    }
    let listener = tokio::net::UnixListener::bind(path)
        .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    let mode = server.socket_mode()?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot set mode {mode:o} on {}: {e}", path.display()))?;
    if let (Some(group), Some(gid)) = (&server.socket_group, socket_gid) {
        nix::unistd::chown(path, None, Some(gid))
            .map_err(|e| format!("cannot give {} to group {group}: {e}", path.display()))?;
    }
    Ok(listener)
}

/// A group name or number as a gid.
fn group_id(group: &str) -> Result<nix::unistd::Gid, String> {
    match group.parse::<u32>() {
        Ok(n) => Ok(nix::unistd::Gid::from_raw(n)),
        Err(_) => Ok(nix::unistd::Group::from_name(group)
            .map_err(|e| format!("[server] socket_group {group:?}: {e}"))?
            .ok_or_else(|| format!("[server] socket_group {group:?} does not exist"))?
            .gid),
    }
}

pub(super) async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the daemon with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining in-flight calls"),
        _ = int.recv() => tracing::info!("SIGINT: draining in-flight calls"),
    }
    crate::systemd::stopping();
}
