//! The district hub: merges every community's document, records the district's
//! reviews, and (later) ranks the communities.
//!
//! Flow: `server::spawn` opens the [`store::HubStore`] on its own thread, accepts TLS
//! connections itself (to enforce the revocation list) and serves the gRPC sync
//! service (`service`, the only module that sees prost types). Each connection's
//! stream runs one `session`: turns of Automerge sync messages, every incoming change
//! checked by the write policy and the document validator before it is stored, and
//! acknowledged only after it is durable. `pki` makes and revokes certificates; `cli`
//! is the `fivestar-hub` command line.

pub mod cli;
pub mod config;
pub mod conn;
pub mod desk;
pub mod guard;
pub mod observe;
pub mod pki;
pub mod report;
pub mod server;
pub mod service;
pub mod session;
pub mod slots;
pub mod status;
pub mod store;
pub mod thumbs;
pub mod web;
