//! A community's node: the offline-first store and the staff command line.
//!
//! Flow of a command: [`cli::run`] reads the data directory's [`config::NodeConfig`]
//! and standard, opens the [`store::Store`] (the one owner of the SQLite file), applies
//! one edit to the community's document from `fivestar-core` inside one durable
//! transaction, and prints what it did. [`sync`] talks to the hub: one round
//! (`fivestar-node sync`) or a daemon that keeps the node in sync (`fivestar-node run`).

pub mod cli;
pub mod config;
pub mod i18n;
pub mod ops;
pub mod store;
pub mod sync;
pub mod web;
