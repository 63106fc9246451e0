//! Rich Authorization Requests (RFC 9396): `authorization_details` is an
//! array of objects, each with a string `type`. Checked wherever it may
//! appear (request objects, access tokens); anything else is refused naming
//! the element at fault.

use super::claims::invalid;
use crate::error::Result;
use serde_json::{Map, Value};

/// Checks `authorization_details` when present.
///
/// # Errors
/// `InvalidArgument` naming the element at fault.
pub(crate) fn check(claims: &Map<String, Value>) -> Result<()> {
    let Some(details) = claims.get("authorization_details") else {
        return Ok(());
    };
    let Value::Array(items) = details else {
        return Err(invalid(
            "claim \"authorization_details\" must be an array of objects",
        ));
    };
    for (i, item) in items.iter().enumerate() {
        let Value::Object(o) = item else {
            return Err(invalid(format!(
                "authorization_details[{i}] must be an object"
            )));
        };
        match o.get("type") {
            Some(Value::String(t)) if !t.is_empty() => {}
            _ => {
                return Err(invalid(format!(
                    "authorization_details[{i}] needs a non-empty string \"type\""
                )))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn c(v: Value) -> Map<String, Value> {
        json!({ "authorization_details": v })
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn rfc9396_shapes() {
        assert!(check(&Map::new()).is_ok());
        assert!(check(&c(json!([{"type": "payment_initiation", "instructedAmount": {"currency": "EUR", "amount": "123.50"}}]))).is_ok());
        for (bad, needle) in [
            (json!({"type": "x"}), "array"),
            (json!(["x"]), "[0]"),
            (json!([{"type": "a"}, {"locations": []}]), "[1]"),
            (json!([{"type": 5}]), "[0]"),
            (json!([{"type": ""}]), "[0]"),
        ] {
            let err = check(&c(bad.clone())).unwrap_err().to_string();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }
}
