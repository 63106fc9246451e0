//! What a token must contain under the FAPI profiles: one module per rule set.
//! Functions here are pure (inputs to claims and headers, or a refusal), so
//! each is unit-tested on its own; the server calls them before signing.

pub mod profile;
