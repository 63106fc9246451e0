//! # p11-fault: the weather of a network HSM, for tests
//!
//! A PKCS#11 module that loads another one (`P11_FAULT_MODULE`, default
//! SoftHSM2) and passes every call through, after consulting a control file
//! (`P11_FAULT_CONTROL`) that it reads again whenever the file changes, so a
//! test can change the weather under a running daemon. Each line of the
//! file is one rule:
//!
//! ```text
//! # function  settings (all optional)
//! C_Sign      latency=2ms jitter=1ms
//! C_Sign      error=CKR_DEVICE_ERROR rate=0.25
//! C_Login     error=CKR_USER_NOT_LOGGED_IN nth=3
//! *           hang
//! ```
//!
//! - `latency`, `jitter`: a fixed delay plus a uniform random one (ms or us).
//! - `error=NAME`: the call fails with that return value instead of running,
//!   on every call, with probability `rate`, or only on the `nth` call
//!   (counted per function since the rule appeared).
//! - `after`: the call runs on the wrapped module first and the error is
//!   returned anyway (the device did the work, the reply was lost).
//! - `hang`: the call waits until the control file no longer says `hang`
//!   for it, then runs.
//! - `*` matches every function the module intercepts.
//!
//! Intercepted (the calls custosd makes on its request paths): C_OpenSession,
//! C_CloseSession, C_GetSessionInfo, C_Login, C_FindObjectsInit,
//! C_FindObjects, C_GetAttributeValue, C_GenerateKeyPair, C_SignInit,
//! C_Sign, C_VerifyInit, C_Verify, C_DecryptInit, C_Decrypt. Every other
//! function the wrapped module has is forwarded untouched.
#![allow(unsafe_code)] // an FFI shim: every function is a C entry point
#![allow(non_snake_case, clippy::missing_safety_doc)]

use cryptoki_sys::*;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

/// One line of the control file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rule {
    /// The function name, or `*`.
    pub function: String,
    /// Fixed added latency.
    pub latency: Duration,
    /// Uniform random extra latency, up to this.
    pub jitter: Duration,
    /// The return value to fail with, if any.
    pub error: Option<CK_RV>,
    /// Probability of failing (1.0 when absent).
    pub rate: f64,
    /// Fail only the nth call (1-based), when set.
    pub nth: Option<u64>,
    /// Hold the call until the rule goes away.
    pub hang: bool,
    /// Run the call, then fail it anyway (a lost reply).
    pub after: bool,
}

/// The PKCS#11 return values a rule may name.
pub fn error_code(name: &str) -> Option<CK_RV> {
    Some(match name {
        "CKR_DEVICE_ERROR" => CKR_DEVICE_ERROR,
        "CKR_SESSION_HANDLE_INVALID" => CKR_SESSION_HANDLE_INVALID,
        "CKR_SESSION_CLOSED" => CKR_SESSION_CLOSED,
        "CKR_DEVICE_REMOVED" => CKR_DEVICE_REMOVED,
        "CKR_TOKEN_NOT_PRESENT" => CKR_TOKEN_NOT_PRESENT,
        "CKR_USER_NOT_LOGGED_IN" => CKR_USER_NOT_LOGGED_IN,
        "CKR_GENERAL_ERROR" => CKR_GENERAL_ERROR,
        "CKR_DEVICE_MEMORY" => CKR_DEVICE_MEMORY,
        _ => return None,
    })
}

fn duration(v: &str) -> Option<Duration> {
    let (num, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit() && c != '.')?);
    let n: f64 = num.parse().ok()?;
    let micros = match unit {
        "ms" => n * 1000.0,
        "us" => n,
        "s" => n * 1_000_000.0,
        _ => return None,
    };
    Some(Duration::from_micros(micros as u64))
}

/// Parses the control file; lines that do not parse are skipped (and named
/// on stderr), so a typo never crashes the process under test.
pub fn parse(text: &str) -> Vec<Rule> {
    let mut rules = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let mut words = line.split_whitespace();
        let Some(function) = words.next() else {
            continue;
        };
        let mut rule = Rule {
            function: function.to_string(),
            rate: 1.0,
            ..Rule::default()
        };
        let mut ok = true;
        for w in words {
            match w.split_once('=') {
                Some(("latency", v)) => {
                    rule.latency = duration(v).unwrap_or_else(|| {
                        ok = false;
                        Duration::ZERO
                    })
                }
                Some(("jitter", v)) => {
                    rule.jitter = duration(v).unwrap_or_else(|| {
                        ok = false;
                        Duration::ZERO
                    })
                }
                Some(("error", v)) => {
                    rule.error = error_code(v);
                    ok &= rule.error.is_some();
                }
                Some(("rate", v)) => {
                    rule.rate = v.parse().unwrap_or_else(|_| {
                        ok = false;
                        1.0
                    })
                }
                Some(("nth", v)) => rule.nth = v.parse().ok(),
                None if w == "hang" => rule.hang = true,
                None if w == "after" => rule.after = true,
                _ => ok = false,
            }
        }
        if ok {
            rules.push(rule);
        } else {
            eprintln!("p11-fault: ignoring control line {line:?}");
        }
    }
    rules
}

struct Weather {
    path: Option<String>,
    stamp: Option<(SystemTime, u64)>,
    rules: Vec<Rule>,
    calls: HashMap<String, u64>,
    rng: u64,
    checked: Instant,
}

impl Weather {
    /// Re-reads the control file when its mtime or size changed (checked at
    /// most every 5 ms).
    fn refresh(&mut self) {
        let Some(path) = &self.path else { return };
        if self.checked.elapsed() < Duration::from_millis(5) && self.stamp.is_some() {
            return;
        }
        self.checked = Instant::now();
        let stamp = std::fs::metadata(path)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())));
        if stamp != self.stamp {
            self.stamp = stamp;
            let rules = parse(&std::fs::read_to_string(path).unwrap_or_default());
            if rules != self.rules {
                self.calls.clear();
            }
            self.rules = rules;
        }
    }

    fn random(&mut self) -> f64 {
        // xorshift64: good enough for fault rates.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }

    /// What to do to a call of `function`: (delay, hang, error, after).
    fn decide(&mut self, function: &str) -> (Duration, bool, Option<CK_RV>, bool) {
        self.refresh();
        let count = {
            let c = self.calls.entry(function.to_string()).or_insert(0);
            *c += 1;
            *c
        };
        let mut delay = Duration::ZERO;
        let mut hang = false;
        let mut error = None;
        let mut after = false;
        let rules: Vec<Rule> = self
            .rules
            .iter()
            .filter(|r| r.function == function || r.function == "*")
            .cloned()
            .collect();
        for r in rules {
            delay = delay.saturating_add(r.latency);
            if !r.jitter.is_zero() {
                delay = delay.saturating_add(r.jitter.mul_f64(self.random()));
            }
            hang |= r.hang;
            if let Some(e) = r.error {
                let hit = match r.nth {
                    Some(n) => count == n,
                    None => r.rate >= 1.0 || self.random() < r.rate,
                };
                if hit && error.is_none() {
                    error = Some(e);
                    after = r.after;
                }
            }
        }
        (delay, hang, error, after)
    }

    fn hangs(&mut self, function: &str) -> bool {
        self.checked = Instant::now() - Duration::from_secs(1);
        self.refresh();
        self.rules
            .iter()
            .any(|r| r.hang && (r.function == function || r.function == "*"))
    }
}

fn weather() -> &'static Mutex<Weather> {
    static W: OnceLock<Mutex<Weather>> = OnceLock::new();
    W.get_or_init(|| {
        let seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1;
        Mutex::new(Weather {
            path: std::env::var("P11_FAULT_CONTROL").ok(),
            stamp: None,
            rules: Vec::new(),
            calls: HashMap::new(),
            rng: seed,
            checked: Instant::now(),
        })
    })
}

/// What happens to one call after the weather was applied.
enum Fate {
    /// Forward it.
    Run,
    /// Fail it without forwarding.
    Fail(CK_RV),
    /// Forward it, then fail it anyway.
    RunThenFail(CK_RV),
}

/// Applies the weather to one call: sleeps, hangs, and decides its fate.
/// The lock is never held while sleeping, so calls on other threads go on.
fn apply(function: &str) -> Fate {
    let (delay, hang, error, after) = weather().lock().map(|mut w| w.decide(function)).unwrap_or((
        Duration::ZERO,
        false,
        None,
        false,
    ));
    if hang {
        while weather()
            .lock()
            .map(|mut w| w.hangs(function))
            .unwrap_or(false)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    if !delay.is_zero() {
        std::thread::sleep(delay);
    }
    match (error, after) {
        (None, _) => Fate::Run,
        (Some(rv), false) => Fate::Fail(rv),
        (Some(rv), true) => Fate::RunThenFail(rv),
    }
}

struct Real {
    list: CK_FUNCTION_LIST,
    _lib: libloading::Library,
}

// The function list is a table of C function pointers, immutable once read.
unsafe impl Send for Real {}
unsafe impl Sync for Real {}

fn real() -> Option<&'static Real> {
    static REAL: OnceLock<Option<Real>> = OnceLock::new();
    REAL.get_or_init(|| {
        let path = std::env::var("P11_FAULT_MODULE")
            .unwrap_or_else(|_| "/usr/lib/softhsm/libsofthsm2.so".to_string());
        let lib = match unsafe { libloading::Library::new(&path) } {
            Ok(l) => l,
            Err(e) => {
                eprintln!("p11-fault: cannot load {path}: {e}");
                return None;
            }
        };
        let get: libloading::Symbol<unsafe extern "C" fn(*mut CK_FUNCTION_LIST_PTR) -> CK_RV> =
            unsafe { lib.get(b"C_GetFunctionList\0") }.ok()?;
        let mut list: CK_FUNCTION_LIST_PTR = std::ptr::null_mut();
        if unsafe { get(&mut list) } != CKR_OK || list.is_null() {
            eprintln!("p11-fault: {path}: C_GetFunctionList failed");
            return None;
        }
        let list = unsafe { *list };
        Some(Real { list, _lib: lib })
    })
    .as_ref()
}

macro_rules! intercept {
    ($($name:ident ( $($arg:ident : $ty:ty),* );)*) => {
        $(
            unsafe extern "C" fn $name($($arg: $ty),*) -> CK_RV {
                let fate = apply(stringify!($name));
                if let Fate::Fail(rv) = fate {
                    return rv;
                }
                let rv = match real().and_then(|r| r.list.$name) {
                    Some(f) => unsafe { f($($arg),*) },
                    None => CKR_FUNCTION_NOT_SUPPORTED,
                };
                match fate {
                    Fate::RunThenFail(lost) if rv == CKR_OK => lost,
                    _ => rv,
                }
            }
        )*
        fn install(list: &mut CK_FUNCTION_LIST) {
            $( list.$name = Some($name); )*
        }
    };
}

intercept! {
    C_OpenSession(slot: CK_SLOT_ID, flags: CK_FLAGS, app: *mut std::os::raw::c_void, notify: CK_NOTIFY, session: *mut CK_SESSION_HANDLE);
    C_CloseSession(session: CK_SESSION_HANDLE);
    C_GetSessionInfo(session: CK_SESSION_HANDLE, info: *mut CK_SESSION_INFO);
    C_Login(session: CK_SESSION_HANDLE, user: CK_USER_TYPE, pin: *mut CK_UTF8CHAR, len: CK_ULONG);
    C_FindObjectsInit(session: CK_SESSION_HANDLE, template: *mut CK_ATTRIBUTE, count: CK_ULONG);
    C_FindObjects(session: CK_SESSION_HANDLE, objects: *mut CK_OBJECT_HANDLE, max: CK_ULONG, found: *mut CK_ULONG);
    C_GetAttributeValue(session: CK_SESSION_HANDLE, object: CK_OBJECT_HANDLE, template: *mut CK_ATTRIBUTE, count: CK_ULONG);
    C_GenerateKeyPair(session: CK_SESSION_HANDLE, mech: *mut CK_MECHANISM, public: *mut CK_ATTRIBUTE, public_count: CK_ULONG, private: *mut CK_ATTRIBUTE, private_count: CK_ULONG, public_key: *mut CK_OBJECT_HANDLE, private_key: *mut CK_OBJECT_HANDLE);
    C_SignInit(session: CK_SESSION_HANDLE, mech: *mut CK_MECHANISM, key: CK_OBJECT_HANDLE);
    C_Sign(session: CK_SESSION_HANDLE, data: *mut CK_BYTE, len: CK_ULONG, signature: *mut CK_BYTE, signature_len: *mut CK_ULONG);
    C_VerifyInit(session: CK_SESSION_HANDLE, mech: *mut CK_MECHANISM, key: CK_OBJECT_HANDLE);
    C_Verify(session: CK_SESSION_HANDLE, data: *mut CK_BYTE, len: CK_ULONG, signature: *mut CK_BYTE, signature_len: CK_ULONG);
    C_DecryptInit(session: CK_SESSION_HANDLE, mech: *mut CK_MECHANISM, key: CK_OBJECT_HANDLE);
    C_Decrypt(session: CK_SESSION_HANDLE, data: *mut CK_BYTE, len: CK_ULONG, out: *mut CK_BYTE, out_len: *mut CK_ULONG);
}

fn ours() -> Option<&'static CK_FUNCTION_LIST> {
    static OURS: OnceLock<Option<CK_FUNCTION_LIST>> = OnceLock::new();
    OURS.get_or_init(|| {
        let mut list = real()?.list;
        install(&mut list);
        list.C_GetFunctionList = Some(C_GetFunctionList);
        Some(list)
    })
    .as_ref()
}

/// The module's one exported entry point: the wrapped module's function
/// list with the intercepted functions replaced.
#[no_mangle]
pub unsafe extern "C" fn C_GetFunctionList(list: *mut CK_FUNCTION_LIST_PTR) -> CK_RV {
    if list.is_null() {
        return CKR_ARGUMENTS_BAD;
    }
    match ours() {
        Some(l) => {
            unsafe { *list = l as *const CK_FUNCTION_LIST as CK_FUNCTION_LIST_PTR };
            CKR_OK
        }
        None => CKR_GENERAL_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_lines_parse_and_typos_are_skipped() {
        let rules = parse(
            "# weather\nC_Sign latency=2ms jitter=500us\nC_Login error=CKR_USER_NOT_LOGGED_IN nth=3\n* hang\nC_Sign error=CKR_NOPE\nC_Sign rate=0.5 error=CKR_DEVICE_ERROR\n",
        );
        assert_eq!(rules.len(), 4);
        assert_eq!(rules[0].latency, Duration::from_millis(2));
        assert_eq!(rules[0].jitter, Duration::from_micros(500));
        assert_eq!(rules[1].error, Some(CKR_USER_NOT_LOGGED_IN));
        assert_eq!(rules[1].nth, Some(3));
        assert!(rules[2].hang && rules[2].function == "*");
        assert_eq!(rules[3].rate, 0.5);
    }

    #[test]
    fn the_nth_call_fails_and_rates_hold_roughly() {
        let mut w = Weather {
            path: None,
            stamp: None,
            rules: parse(
                "C_Sign error=CKR_DEVICE_ERROR nth=3\nC_Login error=CKR_DEVICE_ERROR rate=0.25\n",
            ),
            calls: HashMap::new(),
            rng: 12345,
            checked: Instant::now(),
        };
        let fails: Vec<bool> = (0..5).map(|_| w.decide("C_Sign").2.is_some()).collect();
        w.rules = parse("C_Sign error=CKR_DEVICE_ERROR after\n");
        assert!(w.decide("C_Sign").3, "after: the call runs, then fails");
        w.rules = parse(
            "C_Sign error=CKR_DEVICE_ERROR nth=3\nC_Login error=CKR_DEVICE_ERROR rate=0.25\n",
        );
        w.calls.clear();
        assert_eq!(fails, [false, false, true, false, false]);
        let n = (0..4000)
            .filter(|_| w.decide("C_Login").2.is_some())
            .count();
        assert!((800..1200).contains(&n), "{n}");
        assert_eq!(w.decide("C_Verify"), (Duration::ZERO, false, None, false));
    }
}
