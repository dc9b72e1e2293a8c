//! The district document: the standard and the registry as the hub publishes them.
//!
//! Devices may read it and never write it (see [`crate::policy`]). A node scores with
//! the standard it holds here once it has synced, and keeps using it offline; before
//! its first sync it uses the standard `init` gave it. Schema:
//!
//! ```text
//! ROOT
//! ├── standard: str    the standard's TOML text
//! └── registry: str    the registry's TOML text
//! ```
//!
//! Only the hub writes it, so last-writer-wins on each text is exactly right.

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{Automerge, AutomergeError, ROOT, ReadDoc, ScalarValue, Value};

use crate::{Registry, RegistryError, Standard, StandardError};

/// Writes the standard and registry texts, if they differ from what the document
/// holds. Returns whether anything changed.
pub fn publish(
    doc: &mut Automerge,
    standard_toml: &str,
    registry_toml: &str,
    at_seconds: i64,
) -> Result<bool, AutomergeError> {
    let same = text(doc, "standard").as_deref() == Some(standard_toml)
        && text(doc, "registry").as_deref() == Some(registry_toml);
    if same {
        return Ok(false);
    }
    let options = CommitOptions::default()
        .with_time(at_seconds)
        .with_message(r#"{"by":"hub","action":"publish standard and registry"}"#);
    doc.transact_with(
        |_| options,
        |tx| -> Result<(), AutomergeError> {
            tx.put(ROOT, "standard", standard_toml)?;
            tx.put(ROOT, "registry", registry_toml)?;
            Ok(())
        },
    )
    .map_err(|failure| failure.error)?;
    Ok(true)
}

/// The standard the document holds, if any.
pub fn standard(doc: &Automerge) -> Option<Result<Standard, StandardError>> {
    text(doc, "standard").map(|t| Standard::from_toml(&t))
}

/// The registry the document holds, if any.
pub fn registry(doc: &Automerge) -> Option<Result<Registry, RegistryError>> {
    text(doc, "registry").map(|t| Registry::from_toml(&t))
}

fn text(doc: &Automerge, key: &str) -> Option<String> {
    match doc.get(ROOT, key) {
        Ok(Some((Value::Scalar(value), _))) => match value.as_ref() {
            ScalarValue::Str(s) => Some(s.to_string()),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::SAMPLE_REGISTRY_TOML;
    use crate::standard::SAMPLE_STANDARD_TOML;

    #[test]
    fn publishing_twice_changes_nothing_the_second_time() {
        let mut doc = Automerge::new();
        assert!(publish(&mut doc, SAMPLE_STANDARD_TOML, SAMPLE_REGISTRY_TOML, 1).unwrap());
        let heads = doc.get_heads();
        assert!(!publish(&mut doc, SAMPLE_STANDARD_TOML, SAMPLE_REGISTRY_TOML, 2).unwrap());
        assert_eq!(doc.get_heads(), heads);
        assert_eq!(standard(&doc).unwrap().unwrap(), Standard::sample());
        assert_eq!(registry(&doc).unwrap().unwrap(), Registry::sample());
        assert!(standard(&Automerge::new()).is_none());
    }
}
