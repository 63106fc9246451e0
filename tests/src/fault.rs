//! A daemon whose token is reached through the fault-injecting PKCS#11
//! module (`tests/p11-fault`): SoftHSM2 underneath, with latency, errors
//! and hangs a test writes into a control file while the daemon runs.

use crate::{bin, Daemon, DaemonConfig, Hsm};
use std::path::PathBuf;

/// The control file of one daemon's fault module.
#[derive(Debug, Clone)]
pub struct Weather {
    /// The file the module re-reads.
    pub path: PathBuf,
}

impl Weather {
    /// Replaces the rules (see `tests/p11-fault/src/lib.rs` for the format).
    pub fn set(&self, rules: &str) {
        // Written whole and renamed, so the module never reads half a file.
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, rules).expect("write weather");
        std::fs::rename(&tmp, &self.path).expect("rename weather");
        // The module looks at the file at most every 5 ms.
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    /// Fair weather: every call passes straight through.
    pub fn clear(&self) {
        self.set("");
    }
}

/// The fault module's path, next to the test binaries (`cargo build -p p11-fault`).
pub fn module() -> PathBuf {
    let custosd = bin("custosd");
    let so = custosd.with_file_name("libp11_fault.so");
    assert!(
        so.exists(),
        "{} is missing: run `cargo build -p p11-fault` first (tests/run does)",
        so.display()
    );
    so
}

/// Starts a daemon on `hsm`'s SoftHSM2 token through the fault module,
/// with a profile like a network HSM's: calls on blocking threads, a pool
/// of `pool` sessions, a call deadline of `call_timeout_ms`.
pub async fn daemon(
    hsm: &mut Hsm,
    pool: usize,
    call_timeout_ms: u64,
    extra: DaemonConfig,
) -> (Daemon, Weather) {
    let profiles = hsm.dir.path().join("profiles");
    std::fs::create_dir_all(&profiles).expect("profiles dir");
    let softhsm = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../hsm-profiles/softhsm2.toml"
    ))
    .expect("softhsm2 profile");
    let (_, algorithms) = softhsm.split_once("[rsa]").expect("profile layout");
    let profile = format!(
        "name = \"softhsm2-networked\"\ndescription = \"SoftHSM2 behind p11-fault (tests)\"\ntested = true\n\n[sessions]\npool_size = {pool}\nwait_ms = {call_timeout_ms}\ninline_calls = false\ncall_timeout_ms = {call_timeout_ms}\n\n[rsa]{algorithms}"
    );
    std::fs::write(profiles.join("softhsm2-networked.toml"), profile).expect("profile");
    hsm.profile = "softhsm2-networked".into();
    let weather = Weather {
        path: hsm.dir.path().join("weather"),
    };
    weather.clear();
    let mut cfg = extra;
    cfg.module = module().display().to_string();
    cfg.env
        .push(("P11_FAULT_MODULE".into(), hsm.module.clone()));
    cfg.env.push((
        "P11_FAULT_CONTROL".into(),
        weather.path.display().to_string(),
    ));
    cfg.server_toml
        .push_str(&format!("\nprofiles_dir = \"{}\"\n", profiles.display()));
    (Daemon::start_with(hsm, cfg).await, weather)
}
