//! # custos-daemon
//!
//! `custosd` keeps a FAPI authorization server's signing keys inside a
//! PKCS#11 HSM (or, later, a TPM) and signs tokens with them over gRPC on a
//! Unix socket. Private keys never leave the device.
//!
//! ## Layout
//!
//! The folders follow a request, and the arrows run one way:
//!
//! - [`server`]: gRPC services; caller identity and checks; proto <-> domain; error -> status.
//! - [`fapi`]: what each FAPI token must contain; the profiles' algorithm rules.
//! - [`jose`]: JWK/JWKS, RFC 7638 thumbprints, compact JWS with device keys.
//! - [`keyring`]: keysets, versions and states, the atomically written manifest.
//! - [`backend`]: the [`backend::KeyBackend`] trait; PKCS#11 and the `--dev` software backend.
//!
//! - [`binding`]: sender constraints (client certificates, DPoP), beside `fapi`.
//!
//! Beside them: [`config`] (TOML), [`secret`] (PINs), [`files`] (opening trusted files), [`alg`] (the JOSE
//! algorithms), [`error`] (the domain error) and [`runtime`] (wiring),
//! [`systemd`] (sd_notify, watchdog, socket activation).
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
