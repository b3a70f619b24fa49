//! The binary exists and reports its version; the full CLI suites are in `tests/all`.
//! (Having an integration test here also makes `cargo test` build the binary they run.)

#[test]
fn prints_its_version_and_the_commit_it_was_built_from() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_deployer"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    // Built from this checkout: the commit is HEAD's, with its date.
    let head = std::process::Command::new("git")
        .args(["log", "-1", "--format=%H %cs"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&head.stdout);
    let (commit, date) = head.trim().split_once(' ').unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!(
            "deployer {} ({} {date})",
            env!("CARGO_PKG_VERSION"),
            &commit[..12]
        )
    );
}
