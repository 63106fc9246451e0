//! The other PKCS#11 implementations the suite runs against, each set up
//! here without hardware: NSS softokn, opencryptoki's software token and
//! kryoptic. `tests/run` installs the packages, starts `pkcsslotd` with
//! [`OCK_SLOTS`] software-token slots, and builds kryoptic once (cached).

use crate::Hsm;
use std::path::PathBuf;
use std::process::Command;

/// NSS softokn on Debian.
pub const NSS_MODULE: &str = "/usr/lib/x86_64-linux-gnu/libsoftokn3.so";
/// opencryptoki on Debian.
pub const OCK_MODULE: &str = "/usr/lib/x86_64-linux-gnu/pkcs11/libopencryptoki.so";
/// How many software-token slots `tests/setup-opencryptoki` creates (slots 1..=N).
pub const OCK_SLOTS: u64 = 8;
/// The opencryptoki SO PIN `tests/setup-opencryptoki` sets.
pub const OCK_SO_PIN: &str = "87654321";
/// Where opencryptoki slot leases live.
const OCK_LEASES: &str = "/tmp/custos-ock-leases";

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An opencryptoki slot held by one test; released on drop.
#[derive(Debug)]
pub struct SlotLease {
    path: PathBuf,
    /// The slot id.
    pub slot: u64,
}

impl Drop for SlotLease {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn lease_slot() -> SlotLease {
    std::fs::create_dir_all(OCK_LEASES).expect("lease dir");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        for slot in 1..=OCK_SLOTS {
            let path = PathBuf::from(OCK_LEASES).join(format!("slot-{slot}"));
            if std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .is_ok()
            {
                return SlotLease { path, slot };
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no free opencryptoki slot (is tests/setup-opencryptoki run, and {OCK_LEASES} clean?)"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

impl Hsm {
    /// A fresh NSS softokn database (sql: format) with a random user PIN.
    pub fn nss() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("nssdb");
        std::fs::create_dir(&db).expect("db dir");
        let pin = format!("pin-{:016x}", rand::random::<u64>());
        let pw = dir.path().join("pin.txt");
        std::fs::write(&pw, format!("{pin}\n")).expect("pin file");
        run(
            Command::new("certutil")
                .arg("-N")
                .arg("-d")
                .arg(format!("sql:{}", db.display()))
                .arg("-f")
                .arg(&pw),
            "certutil -N (apt-get install libnss3-tools)",
        );
        let args = format!(
            "configdir='sql:{}' certPrefix='' keyPrefix='' secmod='secmod.db' flags=",
            db.display()
        );
        Self {
            conf: PathBuf::new(),
            label: "NSS Certificate DB".into(),
            pin,
            profile: "nss-softokn".into(),
            module: NSS_MODULE.into(),
            selector: format!("token_label = \"NSS Certificate DB\"\ninitialize_args = \"{args}\""),
            env: Vec::new(),
            algorithms: vec!["ES256", "PS256", "RS256", "RSA-OAEP-256"],
            lease: None,
            dir,
        }
    }

    /// A freshly initialised opencryptoki software token in a leased slot.
    pub fn opencryptoki() -> Self {
        let lease = lease_slot();
        let slot = lease.slot.to_string();
        let label = format!("custos-{slot}");
        // PINs are 4 to 8 characters on the software token.
        let pin = format!("{:08x}", rand::random::<u32>());
        let mut init = Command::new("pkcsconf");
        init.args(["-I", "-c", &slot, "-S", OCK_SO_PIN])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = init
            .spawn()
            .expect("pkcsconf runs (apt-get install opencryptoki)");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin");
            writeln!(stdin, "{label}").expect("label");
        }
        let out = child.wait_with_output().expect("pkcsconf -I");
        assert!(
            out.status.success(),
            "pkcsconf -I: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        run(
            Command::new("pkcsconf").args(["-u", "-c", &slot, "-S", OCK_SO_PIN, "-n", &pin]),
            "pkcsconf -u",
        );
        let flags = run(
            Command::new("pkcsconf").args(["-t", "-c", &slot]),
            "pkcsconf -t",
        );
        assert!(
            flags.contains("USER_PIN_INITIALIZED"),
            "slot {slot} not initialised: {flags}"
        );
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            conf: PathBuf::new(),
            label,
            pin,
            profile: "opencryptoki".into(),
            module: OCK_MODULE.into(),
            selector: format!("slot_id = {slot}"),
            env: Vec::new(),
            algorithms: vec!["PS256", "RS256", "RSA-OAEP-256"],
            lease: Some(lease),
        }
    }

    /// A fresh kryoptic token (sqlite) in a private directory. The module is
    /// built by `tests/run` (see `tests/build-kryoptic`) and named by
    /// `CUSTOS_KRYOPTIC_MODULE`.
    pub fn kryoptic() -> Self {
        let module = std::env::var("CUSTOS_KRYOPTIC_MODULE").unwrap_or_else(|_| {
            panic!("CUSTOS_KRYOPTIC_MODULE is not set: tests/run builds kryoptic and sets it")
        });
        let dir = tempfile::tempdir().expect("temp dir");
        let conf = dir.path().join("kryoptic.conf");
        std::fs::write(
            &conf,
            format!(
                "[[slots]]\nslot = 1\ndbtype = \"sqlite\"\ndbargs = \"{}\"\n",
                dir.path().join("token.sql").display()
            ),
        )
        .expect("kryoptic.conf");
        let pin = format!("pin-{:016x}", rand::random::<u64>());
        let env = vec![("KRYOPTIC_CONF".to_string(), conf.display().to_string())];
        let tool = |args: &[&str], what: &str| {
            run(
                Command::new("pkcs11-tool")
                    .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    .args(["--module", &module])
                    .args(args),
                what,
            )
        };
        tool(
            &["--init-token", "--so-pin", "so-secret", "--label", "custos"],
            "kryoptic init-token",
        );
        tool(
            &[
                "--token-label",
                "custos",
                "--login",
                "--login-type",
                "so",
                "--so-pin",
                "so-secret",
                "--init-pin",
                "--new-pin",
                &pin,
            ],
            "kryoptic init-pin",
        );
        Self {
            conf: PathBuf::new(),
            label: "custos".into(),
            pin,
            profile: "kryoptic".into(),
            selector: "token_label = \"custos\"".into(),
            env,
            algorithms: vec!["ES256", "PS256", "RS256", "RSA-OAEP-256"],
            lease: None,
            module,
            dir,
        }
    }
}
