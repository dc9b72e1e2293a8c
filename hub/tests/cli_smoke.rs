//! The binary starts and describes itself. (Its presence also makes `cargo test`
//! build `fivestar-hub`, which the workspace's integration tests in `tests/` run.)

use std::process::Command;

#[test]
fn version_and_help_describe_the_program() {
    let bin = env!("CARGO_BIN_EXE_fivestar-hub");
    let version = Command::new(bin).arg("--version").output().unwrap();
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8(version.stdout).unwrap().trim(),
        format!("fivestar-hub {}", env!("CARGO_PKG_VERSION"))
    );
    let help = String::from_utf8(Command::new(bin).arg("--help").output().unwrap().stdout).unwrap();
    for command in ["serve", "review", "pki"] {
        assert!(help.contains(command), "help lacks {command}: {help}");
    }
}
