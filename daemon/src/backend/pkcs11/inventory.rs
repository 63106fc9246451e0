//! The listing of Custos keys on the token, used to find orphans.

use super::pool::PooledSession;
use crate::backend::{BackendError, KeyRef};
use cryptoki::object::{Attribute, AttributeType, ObjectClass};

/// Every private key whose label starts with `custos:`.
pub(super) fn custos_keys(s: &mut PooledSession<'_>) -> Result<Vec<KeyRef>, BackendError> {
    let handles = s.run("listing keys", |session| {
        session.find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])
    })?;
    let mut out = Vec::new();
    for h in handles {
        let Ok(attrs) = s.run("reading key labels", |session| {
            session.get_attributes(h, &[AttributeType::Id, AttributeType::Label])
        }) else {
            continue;
        };
        let (mut id, mut label) = (None, None);
        for a in attrs {
            match a {
                Attribute::Id(v) => id = Some(hex::encode(v)),
                Attribute::Label(v) => label = Some(String::from_utf8_lossy(&v).into_owned()),
                _ => {}
            }
        }
        if let (Some(id), Some(label)) = (id, label) {
            if label.starts_with("custos:") {
                out.push(KeyRef { id, label });
            }
        }
    }
    Ok(out)
}
