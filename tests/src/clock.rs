//! A wall clock the test moves: `custosd` runs under libfaketime
//! (`LD_PRELOAD`), which shifts `CLOCK_REALTIME` by the offset written in a
//! file the test owns. The monotonic clock is left alone, so the daemon's
//! timers (the schedule tick, timeouts) run at real speed while its idea of
//! the date jumps by days: a 90-day rotation is tested in seconds, at the
//! periods a bank would configure, with no clock override in `custosd`.

use std::path::{Path, PathBuf};

/// Where Debian's `libfaketime` package puts the library (`tests/run`
/// installs it).
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// An offset clock for one daemon.
#[derive(Debug)]
pub struct FakeClock {
    file: PathBuf,
}

impl FakeClock {
    /// A clock at offset zero, its file in `dir`.
    pub fn new(dir: &Path) -> Self {
        assert!(
            Path::new(LIBFAKETIME).exists(),
            "{LIBFAKETIME} is missing: install Debian's `faketime` package (tests/run does)"
        );
        let clock = Self {
            file: dir.join("faketime"),
        };
        clock.set_offset(0);
        clock
    }

    /// The daemon's environment for this clock (`DaemonConfig::env`).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("LD_PRELOAD".into(), LIBFAKETIME.into()),
            (
                "FAKETIME_TIMESTAMP_FILE".into(),
                self.file.display().to_string(),
            ),
            // Re-read the file at most once a second (not on every call).
            ("FAKETIME_CACHE_DURATION".into(), "1".into()),
            ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
        ]
    }

    /// Sets the daemon's wall clock to real time plus `secs` (it sees the
    /// change within about a second).
    pub fn set_offset(&self, secs: i64) {
        let tmp = self.file.with_extension("new");
        std::fs::write(&tmp, format!("{secs:+}\n")).expect("clock file");
        std::fs::rename(&tmp, &self.file).expect("clock file");
    }
}
