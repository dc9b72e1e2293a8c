//! Who may write what: the hub checks every incoming change against this before it
//! applies or stores anything.
//!
//! - A **device** of community C may write only `community/C`, and there only task
//!   fields: it may create tasks and change any field of a task except `review`. It
//!   may not delete a task, and may not touch the document's root fields.
//! - A **reviewer** (the district) may write only `review` of tasks, in any
//!   community's document, and nothing else.
//! - Nobody but the hub writes the `district` document.
//!
//! Each change is judged by its own effect (Automerge's diff from the change's
//! dependencies to the change), so a forbidden write cannot hide behind a later one
//! in the same batch. The whole batch is refused when one change is.

use automerge::{Automerge, Change, PatchAction};

use crate::document::{community_of, patch_path};

/// Who wrote a change, as the hub knows from a verified certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Writer {
    /// A device of a community.
    Device {
        /// The community's id.
        community: String,
        /// The device's name.
        device: String,
    },
    /// A district reviewer.
    Reviewer {
        /// The reviewer's name.
        name: String,
    },
}

impl std::fmt::Display for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Writer::Device { community, device } => {
                write!(f, "device {device} of community {community}")
            }
            Writer::Reviewer { name } => write!(f, "reviewer {name}"),
        }
    }
}

/// A refused write, naming the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{writer} may not {what}")]
pub struct Denied {
    /// Who tried.
    pub writer: String,
    /// What they may not do, e.g. `write tasks/u-safety-grid/review`.
    pub what: String,
}

/// Checks every change in `changes` (already applied to `doc`) against the rules for
/// `writer` on document `doc_id`.
pub fn authorize(
    writer: &Writer,
    doc_id: &str,
    doc: &Automerge,
    changes: &[Change],
) -> Result<(), Denied> {
    let deny = |what: String| Denied { writer: writer.to_string(), what };
    if changes.is_empty() {
        return Ok(());
    }
    let community = community_of(doc_id);
    match (writer, community) {
        (_, None) => return Err(deny(format!("write the {doc_id} document"))),
        (Writer::Device { community: mine, .. }, Some(theirs)) if mine != theirs => {
            return Err(deny(format!("write {doc_id}")));
        }
        _ => {}
    }
    for change in changes {
        for patch in doc.diff(change.deps(), &[change.hash()]) {
            let path = patch_path(&patch);
            let deleting = matches!(
                patch.action,
                PatchAction::DeleteMap { .. } | PatchAction::DeleteSeq { .. }
            );
            let parts: Vec<&str> = path.split('/').collect();
            let allowed = match writer {
                Writer::Device { .. } => match parts.as_slice() {
                    ["tasks", _] => !deleting,
                    ["tasks", _, "review", ..] => false,
                    ["tasks", _, _, ..] => true,
                    _ => false,
                },
                Writer::Reviewer { .. } => matches!(parts.as_slice(), ["tasks", _, "review", ..]),
            };
            if !allowed {
                let verb = if deleting { "delete" } else { "write" };
                return Err(deny(format!("{verb} {path}")));
            }
        }
    }
    Ok(())
}
