//! The parsers and checks that see bytes an outsider controls, re-exported
//! for the fuzz targets in `daemon/fuzz`: each target calls exactly the code
//! a request reaches, through this one door, while the modules behind it
//! stay private.

pub use crate::binding::cert::{parse as parse_certificate, x5t_s256};
pub use crate::binding::dpop::{check_proof, normalize_htu, record, DpopRequest, DpopRules};
pub use crate::binding::replay::ReplayCache;
pub use crate::duration::{parse_duration, MAX_DURATION};
pub use crate::jose::jwe::decrypt as decrypt_jwe;
pub use crate::jose::verify;
pub use crate::keyring::policy::{Policy, MIN_ROTATION_PERIOD};
pub use crate::numeric_date::{parse as parse_numeric_date, MAX_TIME};
