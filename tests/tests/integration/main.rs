//! The workspace's one integration-test binary: real binaries, real SQLite files,
//! temporary directories. Each module is one area.

// A failed unwrap in a test is a failed test, with its location: that is the point.
#![allow(clippy::unwrap_used)]

mod deploy;
mod district;
mod files;
mod gate;
mod hostile;
mod links;
mod node_cli;
mod node_crash;
mod operators;
mod review_desk;
mod standings;
mod sync;
mod workbench;
