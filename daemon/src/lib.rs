//! # custos-daemon
//!
//! `custosd` keeps a FAPI authorization server's signing keys inside a
//! PKCS#11 HSM or a TPM 2.0 and signs tokens, handshakes and HTTP messages
//! with them over gRPC (a Unix socket, and TCP with mutual TLS). Private
//! keys never leave the device; every use is audited.
//!
//! ## Layout
//!
//! `server` is the hub: each gRPC handler checks the caller
//! (`server`'s `caller.rs`), converts the proto once, asks the rules and
//! signs through the keyring:
//!
//! - `fapi`: what each token must contain, building and checking (one module
//!   per kind; `tls.rs` for TLS handshake signatures); the profiles' rules.
//! - `httpsig`: RFC 9421 HTTP message signatures (pure).
//! - `binding`: sender constraints (client certificates, DPoP, replay).
//! - `jose`: JWK/JWKS, RFC 7638 thumbprints, compact JWS/JWE over device
//!   keys, verification.
//! - `pki`: X.509 for TLS keysets (CSRs signed in the device, chains).
//! - `keyring`: keysets, versions and states, the manifest (file or etcd)
//!   screened against the devices, the schedule, dual-control requests.
//! - `backend`: the [`KeyBackend`] trait; PKCS#11 (session pool,
//!   one-call signing), TPM 2.0, and the `--dev` software backend.
//!
//! So the arrows run `server -> fapi | httpsig | binding -> jose | pki ->
//! keyring -> backend`, and `server -> keyring` directly for admin calls.
//!
//! Beside them: `audit` (the hash-chained log and its signed checkpoints),
//! `config` (TOML), `duration`, `secret` (PINs), `files` (opening
//! trusted files), `alg` (the JOSE algorithms), `error` (the domain
//! error), `verdict` and `numeric_date` (shared by the rules),
//! `metrics`, `logging`, `reload` (SIGHUP), `systemd`, [`doctor`]
//! and [`bench`](mod@bench) (the `custosd` tools), and `runtime` (wiring).
//!
//! Errors take one road: a device's codes become [`Error`] in the
//! backend (`BackendError` and `pkcs11/errors.rs`), and the domain error
//! becomes a `tonic::Status` only in `server/status.rs`, which also names
//! the outcome code of a failed call's audit line. A TPM's codes are mapped
//! in `backend/tpm/errors.rs` the same way.
//!
//! ## The public surface
//!
//! Every module above is private. What leaves the crate is re-exported
//! here: the daemon's entry points for `custosd`'s `main.rs` ([`run`],
//! [`Mode`], [`finish`], [`migrate`], [`open_keyring`], [`init_logging`],
//! [`take_from_environment`]), the offline tools ([`bench`](mod@bench),
//! [`doctor`]), the types a program embedding a backend needs
//! ([`KeyBackend`], [`KeyRef`], [`SoftwareBackend`], [`ActiveKey`], ...),
//! and, in [`untrusted`], the parsers of outsiders' bytes that the fuzz
//! targets drive. Being private, an unused function is a compiler warning
//! (and so a CI failure under `-D warnings`), not hidden dead code.
//!
//! One exception to the arrows, on purpose: `keyring` uses `jose::jwk`
//! (pure functions over a public key) because a version's kid *is* its
//! RFC 7638 thumbprint.

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod alg;
mod audit;
mod backend;
pub mod bench;
mod binding;
mod config;
pub mod doctor;
mod duration;
mod error;
mod fapi;
mod files;
mod httpsig;
mod jose;
mod keyring;
mod logging;
mod metrics;
mod numeric_date;
mod pki;
mod reload;
mod runtime;
mod secret;
mod server;
mod systemd;
pub mod untrusted;
mod verdict;

// The curated surface: what `custosd`'s `main.rs`, the fuzz targets
// ([`untrusted`]) and an embedding program need. Everything else is
// crate-private, so the compiler reports dead code instead of hiding it.
pub use alg::Algorithm;
pub use backend::guard::DeviceGuard;
pub use backend::profile::HsmProfile;
pub use backend::software::SoftwareBackend;
pub use backend::{KeyBackend, KeyRef};
pub use config::Config;
pub use error::{Error, Exhausted, Invalid, Missing, Outage, Result};
pub use keyring::keyset::{Profile, Purpose};
pub use keyring::{ActiveKey, Keyring};
pub use logging::init as init_logging;
pub use runtime::{finish, migrate, open_keyring, run, Mode};
pub use secret::take_from_environment;
