//! The binary exists and reports its version; the full CLI suites are in `tests/all`.
//! (Having an integration test here also makes `cargo test` build the binary they run.)

#[test]
fn prints_its_version() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_deployer"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("deployer {}", env!("CARGO_PKG_VERSION"))
    );
}
