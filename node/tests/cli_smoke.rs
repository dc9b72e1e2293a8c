//! The binary starts and describes itself. (Its presence also makes `cargo test`
//! build `fivestar-node`, which the workspace's integration tests in `tests/` run.)

use std::process::Command;

#[test]
fn version_and_help_describe_the_program() {
    let bin = env!("CARGO_BIN_EXE_fivestar-node");
    let version = Command::new(bin).arg("--version").output().unwrap();
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8(version.stdout).unwrap().trim(),
        format!("fivestar-node {}", env!("CARGO_PKG_VERSION"))
    );
    let help = Command::new(bin).arg("--help").output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for command in ["init", "task", "template", "score", "history", "status"] {
        assert!(help.contains(command), "help lacks {command}: {help}");
    }
}
