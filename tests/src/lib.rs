//! Helpers for the integration tests: run the real binaries against temporary
//! directories and read back what they wrote.
//!
//! The binaries are the ones cargo built for this test run (`target/<profile>/`,
//! next to the test executable's `deps/` folder). `cargo test --workspace` builds
//! them because the `node` and `hub` crates each have an integration test of their own.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use tempfile::TempDir;

/// The path of a workspace binary built for this test run.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lives in target/<profile>/deps");
    let path = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is not built: run the tests with `cargo test --workspace`",
        path.display()
    );
    path
}

/// A node's data directory in a temporary folder, and the commands to drive it.
#[derive(Debug)]
pub struct NodeDir {
    dir: TempDir,
}

impl Default for NodeDir {
    fn default() -> Self {
        NodeDir::new()
    }
}

impl NodeDir {
    /// An empty, not yet initialised, data directory.
    pub fn new() -> NodeDir {
        NodeDir { dir: tempfile::tempdir().expect("a temporary directory") }
    }

    /// A data directory set up for `community` with its template applied.
    pub fn with_template(community: &str) -> NodeDir {
        let node = NodeDir::new();
        node.ok(&["init", "--community", community]);
        node.ok(&["template", "apply"]);
        node
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The node's database file.
    pub fn database(&self) -> PathBuf {
        self.dir.path().join("node.db")
    }

    /// A `fivestar-node` command for this data directory, not yet started.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(binary("fivestar-node"));
        command.arg("--data-dir").arg(self.dir.path()).args(args).env_remove("FIVESTAR_NODE_DIR");
        command
    }

    /// Runs a command and returns what it printed and how it exited.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("fivestar-node starts")
    }

    /// Runs a command that must succeed; returns its standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "fivestar-node {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("UTF-8 output")
    }

    /// Runs a command with `--json` and parses its output.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        serde_json::from_str(&self.ok(&args)).expect("valid JSON")
    }

    /// Runs a command that must fail; returns its exit code and standard error.
    pub fn fail(&self, args: &[&str]) -> (i32, String) {
        let output = self.run(args);
        assert!(!output.status.success(), "fivestar-node {args:?} should have failed");
        let code = output.status.code().unwrap_or(-1);
        (code, String::from_utf8(output.stderr).expect("UTF-8 output"))
    }

    /// The document's heads, from `status --json`.
    pub fn heads(&self) -> Vec<String> {
        let status = self.json(&["status"]);
        status["heads"]
            .as_array()
            .expect("heads is a list")
            .iter()
            .map(|h| h.as_str().expect("a head is a string").to_string())
            .collect()
    }

    /// One task as JSON, from `task show --json`.
    pub fn task(&self, id: &str) -> Value {
        self.json(&["task", "show", id])
    }
}
