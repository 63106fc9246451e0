//! # custos-daemon
//!
//! `custosd` keeps a FAPI authorization server's signing keys inside a
//! PKCS#11 HSM or a TPM 2.0 and signs tokens, handshakes and HTTP messages
//! with them over gRPC (a Unix socket, and TCP with mutual TLS). Private
//! keys never leave the device; every use is audited.
//!
//! ## Layout
//!
//! [`server`] is the hub: each gRPC handler checks the caller
//! ([`server`]'s `caller.rs`), converts the proto once, asks the rules and
//! signs through the keyring:
//!
//! - [`fapi`]: what each token must contain, building and checking (one module
//!   per kind; `tls.rs` for TLS handshake signatures); the profiles' rules.
//! - [`httpsig`]: RFC 9421 HTTP message signatures (pure).
//! - [`binding`]: sender constraints (client certificates, DPoP, replay).
//! - [`jose`]: JWK/JWKS, RFC 7638 thumbprints, compact JWS/JWE over device
//!   keys, verification.
//! - [`pki`]: X.509 for TLS keysets (CSRs signed in the device, chains).
//! - [`keyring`]: keysets, versions and states, the manifest (file or etcd)
//!   screened against the devices, the schedule, dual-control requests.
//! - [`backend`]: the [`backend::KeyBackend`] trait; PKCS#11 (session pool,
//!   one-call signing), TPM 2.0, and the `--dev` software backend.
//!
//! So the arrows run `server -> fapi | httpsig | binding -> jose | pki ->
//! keyring -> backend`, and `server -> keyring` directly for admin calls.
//!
//! Beside them: [`audit`] (the hash-chained log and its signed checkpoints),
//! [`config`] (TOML), [`duration`], [`secret`] (PINs), [`files`] (opening
//! trusted files), [`alg`] (the JOSE algorithms), [`error`] (the domain
//! error), [`verdict`] and [`numeric_date`] (shared by the rules),
//! [`metrics`], [`logging`], [`reload`] (SIGHUP), [`systemd`], [`doctor`]
//! and [`bench`](mod@bench) (the `custosd` tools), and [`runtime`] (wiring).
//!
//! Errors take one road: a device's codes become [`error::Error`] in the
//! backend (`BackendError` and `pkcs11/errors.rs`), and the domain error
//! becomes a `tonic::Status` only in `server/status.rs`, which also names
//! the outcome code of a failed call's audit line.
//!
//! One exception to the arrows, on purpose: `keyring` uses `jose::jwk`
//! (pure functions over a public key) because a version's kid *is* its
//! RFC 7638 thumbprint.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod alg;
pub mod audit;
pub mod backend;
pub mod bench;
pub mod binding;
pub mod config;
pub mod doctor;
pub mod duration;
pub mod error;
pub mod fapi;
pub mod files;
pub mod httpsig;
pub mod jose;
pub mod keyring;
pub mod logging;
pub mod metrics;
pub mod numeric_date;
pub mod pki;
pub mod reload;
pub mod runtime;
pub mod secret;
pub mod server;
pub mod systemd;
pub mod verdict;
