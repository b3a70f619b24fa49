//! What a person reads when AWS fails, through the real binary against moto: one line
//! naming what failed, the service's code and message or the cause, and the fix where
//! one is known; never the SDK's `Debug` dump. Missing credentials are not "transient".

use deployer_tests::support::App;
use deployer_tests::support::cli::command_at;
use deployer_tests::support::env::EcsEnv;

/// No credentials anywhere the SDK looks: not in the environment, no shared config or
/// credentials file, no container or instance metadata.
fn without_credentials(cmd: &mut tokio::process::Command, home: &std::path::Path) {
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
        .env_remove("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        .env_remove("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        .env("HOME", home)
        .env("AWS_CONFIG_FILE", home.join("no-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("no-credentials"))
        // Off EC2 the metadata service would only be waited for.
        .env("AWS_EC2_METADATA_DISABLED", "true");
}

/// The error a failed command printed: its last stderr line, which must be the whole
/// error (no continuation lines), and none of the SDK's own dump.
fn error_line(stderr: &str) -> &str {
    let last = stderr.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: "),
        "not one error line at the end:\n{stderr}"
    );
    assert_eq!(
        stderr.matches("error: ").count(),
        1,
        "more than one error line:\n{stderr}"
    );
    for dump in [
        "DispatchFailure",
        "ConnectorError",
        "dispatch failure",
        "Attempted:",
        "{",
    ] {
        assert!(!last.contains(dump), "{dump} in {last}");
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_failures_read_as_one_line_a_person_can_act_on() {
    let good = App::start(200, "ok");
    let env = EcsEnv::with_task_sets(&good.url, r#"[{ weight = 10 }]"#).await;

    // No credentials: where the SDK looked and how to set some, at once, not retried.
    let home = tempfile::tempdir().unwrap();
    let mut cmd = env.command(&["run", "canary", "--release", "web:2"]);
    without_credentials(&mut cmd, home.path());
    let out = cmd.output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    let line = error_line(&stderr);
    assert!(
        line.starts_with(
            "error: checking release `web:2`: finding task definition `web:2`: no AWS credentials found: tried environment variables"
        ),
        "{line}"
    );
    for said in [
        "~/.aws/config",
        "SSO",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "ECS container credentials",
        "EC2 instance metadata",
        "(profile `default`)",
        "fix: export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
    ] {
        assert!(line.contains(said), "{said}: {line}");
    }
    assert!(!stderr.contains("transient"), "{stderr}");

    // A stopped endpoint: the connection's failure in words, still transient.
    let dir = tempfile::tempdir().unwrap();
    let config = env
        .task_sets(&good.url, r#"[{ weight = 10 }]"#)
        .aws("http://127.0.0.1:9")
        .write(dir.path());
    let out = command_at(&config, &["run", "canary", "--release", "web:2"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert_eq!(
        error_line(&stderr),
        "error: checking release `web:2`: finding task definition `web:2`: cannot connect to AWS: \
         Connection refused (os error 111) (transient)"
    );

    // A real AWS error code from the service, with the fix it implies.
    let config = env
        .config()
        .service("web", |s| {
            s.ecs("no-such-cluster", "web", 4)
                .canary_steps(r#"[{ weight = 10 }]"#)
                .listener(
                    &env.world.listener,
                    None,
                    [&env.world.blue, &env.world.green],
                )
        })
        .write(dir.path());
    let out = command_at(&config, &["run", "canary", "--release", "web:2"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert_eq!(
        error_line(&stderr),
        "error: checking service `web` before deploying: describing the ECS service: \
         ClusterNotFoundException: Cluster not found. (fix: check the service's `cluster` in \
         deployer.toml, and that the region is the cluster's)"
    );
}
