//! What `--release` names, as ECS reads it (issue #22): a task definition family
//! without a revision means its newest ACTIVE revision, and deployer pins it before
//! anything is journaled, so the run recognises its own task set.

use deployer_tests::support::App;
use deployer_tests::support::env::EcsEnv;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_without_a_revision_is_pinned_to_the_newest_one_before_anything_changes() {
    let good = App::start(200, "ok");
    let env = EcsEnv::with_task_sets(&good.url, "[ { weight = 50 } ]").await;
    // The world registers web:1..web:3; `web` is web:3 to ECS.
    let (code, out, err) = env.deployer(&["run", "canary", "--release", "web"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("release web is web:3 now: deploying web:3"),
        "{err}"
    );
    assert_eq!(env.weights().await, (0, 100));
    assert_eq!(
        env.primary().await,
        ("web:3".to_string(), 1),
        "one task set, the pinned release, and no orphan beside it"
    );
    let (_, status, _) = env.deployer(&["status"]).await;
    assert!(status.contains("live:    web:3"), "{status}");
    // Asked again, the same release is found live: nothing is deployed over it.
    let (code, out, err) = env.deployer(&["run", "canary", "--release", "web"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.primary().await, ("web:3".to_string(), 1));
    // And back: the manual rollback finds web:1 by its pinned name.
    let (code, out, err) = env.deployer(&["rollback"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.primary().await, ("web:1".to_string(), 1));
    assert_eq!(env.weights().await, (100, 0));
    // A revision ECS does not have is refused (exit 3) before anything is journaled.
    let (_, before, _) = env.deployer(&["history"]).await;
    let (code, out, err) = env
        .deployer(&["run", "canary", "--release", "web:99"])
        .await;
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(err.contains("--release `web:99`"), "{err}");
    let (_, after, _) = env.deployer(&["history"]).await;
    assert_eq!(before, after, "no deployment was begun");
    assert_eq!(env.primary().await, ("web:1".to_string(), 1));
    // A family ECS does not know is refused before any change.
    let (code, out, err) = env
        .deployer(&["run", "canary", "--release", "nosuch"])
        .await;
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(err.contains("finding task definition `nosuch`"), "{err}");
    assert_eq!(env.primary().await, ("web:1".to_string(), 1));
}
