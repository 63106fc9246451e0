//! Data objects on the token (CKO_DATA) for the shared keyring manifest, and
//! the listing of Custos keys used to find orphans.

use super::pool::PooledSession;
use crate::backend::{BackendError, KeyRef};
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};

/// A data object's handle and label.
#[derive(Debug, Clone)]
pub struct DataObject {
    /// Handle, valid in this process.
    pub handle: ObjectHandle,
    /// CKA_LABEL.
    pub label: String,
}

/// Lists the data objects of `application`.
pub(super) fn list(
    s: &mut PooledSession<'_>,
    application: &str,
) -> Result<Vec<DataObject>, BackendError> {
    let app = application.as_bytes().to_vec();
    let handles = s.run("finding data objects", |session| {
        session.find_objects(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Application(app),
        ])
    })?;
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        // An object deleted by another process between find and read is skipped.
        let Ok(attrs) = s.run("reading a data object label", |session| {
            session.get_attributes(h, &[AttributeType::Label])
        }) else {
            continue;
        };
        for a in attrs {
            if let Attribute::Label(l) = a {
                out.push(DataObject {
                    handle: h,
                    label: String::from_utf8_lossy(&l).into_owned(),
                });
            }
        }
    }
    Ok(out)
}

/// Reads a data object's value.
pub(super) fn read(
    s: &mut PooledSession<'_>,
    handle: ObjectHandle,
) -> Result<Vec<u8>, BackendError> {
    let attrs = s.run("reading a data object", |session| {
        session.get_attributes(handle, &[AttributeType::Value])
    })?;
    attrs
        .into_iter()
        .find_map(|a| match a {
            Attribute::Value(v) => Some(v),
            _ => None,
        })
        .ok_or_else(|| BackendError::Internal("data object without a value".into()))
}

/// Creates a private data object on the token.
pub(super) fn create(
    s: &mut PooledSession<'_>,
    application: &str,
    label: &str,
    value: Vec<u8>,
) -> Result<ObjectHandle, BackendError> {
    let template = vec![
        Attribute::Class(ObjectClass::DATA),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Modifiable(false),
        Attribute::Application(application.as_bytes().to_vec()),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Value(value),
    ];
    s.run("writing a data object", |session| {
        session.create_object(&template)
    })
}

/// Destroys a data object; an error when it is already gone.
pub(super) fn destroy(s: &mut PooledSession<'_>, handle: ObjectHandle) -> Result<(), BackendError> {
    s.run("removing a data object", |session| {
        session.destroy_object(handle)
    })
}

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
