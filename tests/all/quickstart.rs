//! The README's main job: the quickstart promotes a good release and rolls a bad one
//! back, as a newcomer would see it.

use deployer_tests::support::cli::{deployer_bin, repo};

#[test]
fn the_quickstart_promotes_the_good_release_and_rolls_back_the_bad_one() {
    let out = std::process::Command::new(repo("examples/quickstart/run.sh"))
        .arg(deployer_bin())
        .env(
            "DEPLOYER_CACHE_DIR",
            std::env::temp_dir().join("deployer-quickstart-cache"),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("promoted: web:2 is live on 100% of traffic"),
        "{stdout}"
    );
    assert!(
        stdout.contains("rolled back to web:2: gate `smoke` failed"),
        "{stdout}"
    );
    assert!(!stdout.contains("rolled back: rolled back"), "{stdout}");
    // Production traffic, through the stand-in load balancer, never left the good app.
    assert!(
        stdout.contains("production still answers: good: ok"),
        "{stdout}"
    );
    assert!(stdout.contains("live:    web:2"), "{stdout}");
}
