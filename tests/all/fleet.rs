//! Releases of several services (`[releases.NAME]`, `deployer run release`), end to end
//! against moto with the real binary: three services — `api` (ECS, in place, us-east-1),
//! `bets` (Auto Scaling, two groups behind an ALB, in eu-west-1: its own `aws` region) in
//! the first wave, `web` (ECS task sets behind an ALB) in the second — promoted wave by
//! wave; the second wave's gate failing
//! takes all three back; a run killed mid-wave is taken back as a whole by the next
//! `deployer run release` and by `deployer rollback --release`.

use aws_sdk_cloudwatch::types::StateValue;
use deployer_tests::support::config::{ConfigBuilder, Table};
use deployer_tests::support::env::{Alb, EcsEnv, Group, group, group_of};
use deployer_tests::support::{AsgWorld, Moto};

/// The ECS world (us-east-1) and the Auto Scaling world (eu-west-1) in one moto, with
/// the ECS agent.
struct Fleet {
    env: EcsEnv,
    asg: AsgWorld,
    /// Clients of eu-west-1, where `bets` lives.
    eu: deployer_targets::aws::Clients,
}

const RELEASE: &[&str] = &[
    "run",
    "release",
    "shop",
    "--release",
    "api=web:2",
    "--release",
    "bets=web:2",
    "--release",
    "web=web:2",
];

impl Fleet {
    async fn start() -> Fleet {
        let env = EcsEnv::start(&[]).await;
        let asg = Moto::asg_world_in(&env.moto, "eu-west-1");
        let eu = env.moto.clients_in("eu-west-1").await;
        Fleet { env, asg, eu }
    }

    /// `api` rolled in place, `bets` and `web` by canary with these steps for `web`; the
    /// release `shop` in two waves.
    fn config(&self, web_steps: &str) -> ConfigBuilder {
        let [listener, blue, green] = self.asg.alb();
        self.env
            .config()
            .service("web", |s| {
                self.env
                    .task_set_web(s.health_timeout("5s").watch_interval("1s"))
                    .alarm_gate(&["post-traffic", "bake"], &["web-5xx"])
                    .canary_steps(web_steps)
            })
            .service("api", |s| {
                s.health_timeout("5s")
                    .ecs("prod", "api", 2)
                    .strategy("rolling", |p| p.int("min-healthy-percent", 50))
            })
            .service("bets", |s| {
                s.health_timeout("10s")
                    .settings(|t| t.raw("aws", "{ region = \"eu-west-1\" }"))
                    .asg_pair(["web-blue", "web-green"], 2)
                    .listener(listener, None, [blue, green])
                    .canary_steps("[{ weight = 50 }]")
            })
            .release(
                "shop",
                &[&["api", "bets"], &["web"]],
                "canary",
                |t| t.raw("strategies", "{ api = \"rolling\" }"),
                Vec::new(),
            )
    }

    /// api's task definition, web's primary task definition, bets' live group.
    async fn live(&self) -> (String, String, String) {
        let (api, _, _) = self.env.api().await;
        let (web, _) = self.env.primary().await;
        let (blue, green) = self.weights_bets().await;
        let bets = if green == 100 && blue == 0 {
            "web-green"
        } else if blue == 100 && green == 0 {
            "web-blue"
        } else {
            "split"
        };
        (api, web, bets.to_string())
    }

    /// bets' listener weights (blue, green).
    async fn weights_bets(&self) -> (u8, u8) {
        let out = self
            .eu
            .elb
            .describe_listeners()
            .listener_arns(&self.asg.listener)
            .send()
            .await
            .unwrap();
        let groups = out.listeners()[0].default_actions()[0]
            .forward_config()
            .unwrap()
            .target_groups()
            .to_vec();
        let weight = |arn: &str| {
            groups
                .iter()
                .find(|g| g.target_group_arn() == Some(arn))
                .and_then(|g| g.weight())
                .unwrap_or(0) as u8
        };
        (weight(&self.asg.blue), weight(&self.asg.green))
    }

    /// Auto Scaling group `name` of eu-west-1.
    async fn group(&self, name: &str) -> Group {
        group_of(&self.eu, name).await
    }

    async fn json(&self, args: &[&str]) -> (i32, serde_json::Value, String) {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        let (code, stdout, stderr) = self.env.deployer(&all).await;
        let json = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{e}: {stdout}\nstderr: {stderr}"));
        (code, json, stderr)
    }
}

/// How each service of a release summary ended: (service, wave, result, undone).
fn services(summary: &serde_json::Value) -> Vec<(String, u64, String, String)> {
    summary["release"]["services"]
        .as_array()
        .unwrap_or_else(|| panic!("no release section: {summary:#}"))
        .iter()
        .map(|s| {
            (
                s["service"].as_str().unwrap().to_string(),
                s["wave"].as_u64().unwrap(),
                s["result"].as_str().unwrap().to_string(),
                s["undone"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect()
}

fn row(service: &str, wave: u64, result: &str, undone: &str) -> (String, u64, String, String) {
    (service.into(), wave, result.into(), undone.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_of_three_services_is_promoted_wave_by_wave() {
    let fleet = Fleet::start().await;
    fleet
        .env
        .write(&fleet.config("[{ weight = 25 }, { weight = 50 }]"));
    assert_eq!(
        fleet.live().await,
        ("web:1".into(), "web:1".into(), "web-blue".into())
    );

    let (code, summary, stderr) = fleet.json(RELEASE).await;
    assert_eq!(code, 0, "{summary:#}\n{stderr}");
    assert_eq!(summary["result"], "promoted", "{summary:#}");
    assert_eq!(
        services(&summary),
        vec![
            row("api", 1, "promoted", "-"),
            row("bets", 1, "promoted", "-"),
            row("web", 2, "promoted", "-"),
        ]
    );
    assert_eq!(
        fleet.live().await,
        ("web:2".into(), "web:2".into(), "web-green".into())
    );
    assert_eq!(fleet.group("web-green").await, group(&[("2", 2)], 2));
    // The second wave began only after the first was promoted: web's first shift is
    // logged after both first-wave services' results.
    let first_web = stderr.find("[web]").expect("web logged");
    for service in ["[api] deployment", "[bets] deployment"] {
        let done = stderr
            .find(service)
            .unwrap_or_else(|| panic!("{service}: {stderr}"));
        assert!(
            done < first_web,
            "{service} ended after web began:\n{stderr}"
        );
    }
    // Each service's run has its own steps and calls in the summary.
    let web = &summary["release"]["services"][2]["run"];
    assert_eq!(web["result"], "promoted");
    assert!(web["steps"].as_array().unwrap().len() >= 2, "{web:#}");
    assert!(web["aws-api-calls"]["total"].as_u64().unwrap() > 0);

    // status and history show the release and its services.
    let (code, status, _) = fleet.json(&["status", "--release", "shop"]).await;
    assert_eq!(code, 0);
    assert_eq!(status["state"], "idle");
    assert_eq!(status["last"]["finished"]["result"], "promoted");
    let live: Vec<&str> = status["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["live"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(live, ["web:2", "web:2", "web:2"], "{status:#}");
    let (code, history, _) = fleet.json(&["history", "--release", "shop"]).await;
    assert_eq!(code, 0);
    assert_eq!(history.as_array().unwrap().len(), 1);

    // Again: every service has it already; nothing changes.
    let (code, again, _) = fleet.json(RELEASE).await;
    assert_eq!(code, 0, "{again:#}");
    assert!(
        services(&again).iter().all(|(_, _, r, _)| r == "unchanged"),
        "{again:#}"
    );

    // The whole release back, last wave first.
    let (code, back, stderr) = fleet.json(&["rollback", "--release", "shop"]).await;
    assert_eq!(code, 0, "{back:#}\n{stderr}");
    assert_eq!(
        services(&back),
        vec![
            row("api", 1, "promoted", "rolled-back"),
            row("bets", 1, "promoted", "rolled-back"),
            row("web", 2, "promoted", "rolled-back"),
        ]
    );
    assert_eq!(
        fleet.live().await,
        ("web:1".into(), "web:1".into(), "web-blue".into())
    );
    let web_back = stderr.find("[web] taking the service back").unwrap();
    let api_back = stderr.find("[api] taking the service back").unwrap();
    assert!(web_back < api_back, "last wave first:\n{stderr}");
    // A second rollback has nothing left to do.
    let (code, stdout, _) = fleet.env.deployer(&["rollback", "--release", "shop"]).await;
    assert_eq!(code, 0);
    assert!(stdout.contains("taken back already"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_gate_in_the_second_wave_takes_all_three_back() {
    let fleet = Fleet::start().await;
    fleet
        .env
        .write(&fleet.config("[{ weight = 25 }, { weight = 50 }]"));
    fleet.env.set_alarm(StateValue::Alarm).await;

    let (code, summary, stderr) = fleet.json(RELEASE).await;
    assert_eq!(code, 1, "{summary:#}\n{stderr}");
    assert_eq!(summary["result"], "rolled-back");
    assert_eq!(summary["release"]["failed-service"], "web", "{summary:#}");
    assert!(
        summary["release"]["rollback-reason"]
            .as_str()
            .unwrap()
            .contains("web-5xx"),
        "{summary:#}"
    );
    assert_eq!(
        services(&summary),
        vec![
            row("api", 1, "promoted", "rolled-back"),
            row("bets", 1, "promoted", "rolled-back"),
            row("web", 2, "rolled-back", "-"),
        ]
    );
    assert_eq!(
        fleet.live().await,
        ("web:1".into(), "web:1".into(), "web-blue".into())
    );
    assert_eq!(fleet.group("web-blue").await, group(&[("1", 2)], 2));
    // The release's rollback is journaled and shown.
    let (_, status, _) = fleet.json(&["status", "--release", "shop"]).await;
    assert_eq!(status["last"]["finished"]["result"], "rolled-back");
    assert_eq!(status["last"]["rolling-back"]["service"], "web");
    // Nothing left to take back.
    let (code, stdout, _) = fleet.env.deployer(&["rollback", "--release", "shop"]).await;
    assert_eq!(code, 0);
    assert!(stdout.contains("rolled back already"), "{stdout}");
}

/// Kill the release run while `web` (second wave) is at 25%, then let `recover` (the
/// next command) take it back: every service on its old release.
async fn killed_mid_wave_then(recover: &[&str], expect_code: i32) {
    let fleet = Fleet::start().await;
    fleet
        .env
        .write(&fleet.config("[{ weight = 25, bake = \"60s\" }, { weight = 50 }]"));
    fleet
        .env
        .kill_when(RELEASE, "web at 25%", |(_, green)| green == 25)
        .await;
    let (_, status, _) = fleet.json(&["status", "--release", "shop"]).await;
    assert_eq!(status["state"], "deploying", "{status:#}");
    assert_eq!(status["in-progress"]["wave"], 1, "{status:#}");

    // The next command runs without the bake the killed run waited in.
    fleet
        .env
        .write(&fleet.config("[{ weight = 25 }, { weight = 50 }]"));
    let (code, stdout, stderr) = fleet.env.deployer(recover).await;
    assert_eq!(code, expect_code, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("did not finish: taking it back first"),
        "{stderr}"
    );
    if recover[0] == "rollback" {
        assert_eq!(
            fleet.live().await,
            ("web:1".into(), "web:1".into(), "web-blue".into())
        );
        let (_, history, _) = fleet.json(&["history", "--release", "shop"]).await;
        assert_eq!(
            history[0]["finished"]["result"], "rolled-back",
            "{history:#}"
        );
        assert_eq!(history[0]["services"]["api"]["undone"], "rolled-back");
        assert_eq!(history[0]["services"]["web"]["undone"], "rolled-back");
    } else {
        // Taken back, then deployed afresh: the new run promoted everything.
        assert_eq!(
            fleet.live().await,
            ("web:2".into(), "web:2".into(), "web-green".into())
        );
        let (_, history, _) = fleet.json(&["history", "--release", "shop"]).await;
        assert_eq!(history[0]["finished"]["result"], "promoted", "{history:#}");
        assert_eq!(
            history[1]["finished"]["result"], "rolled-back",
            "{history:#}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_wave_then_the_next_run_takes_the_release_back_first() {
    killed_mid_wave_then(RELEASE, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_wave_then_rollback_release_takes_it_back() {
    killed_mid_wave_then(&["rollback", "--release", "shop"], 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_is_checked_whole_before_anything_changes() {
    let fleet = Fleet::start().await;
    let base = fleet.config("[{ weight = 25 }]");
    fleet.env.write(&base);
    for (args, says) in [
        (
            vec!["run", "release", "shop", "--release", "db=web:2"],
            "not a service of release `shop`",
        ),
        (
            vec!["run", "release", "nope", "--release", "api=web:2"],
            "no release named `nope`",
        ),
        (
            vec!["run", "release", "shop", "--release", "api=web:9"],
            "web:9",
        ),
        (
            vec!["run", "release", "--release", "api=web:2"],
            "needs the release's name",
        ),
    ] {
        let (code, _, stderr) = fleet.env.deployer(&args).await;
        assert_eq!(code, 3, "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    // A release config that cannot work is refused at its field.
    for (edit, field) in [
        (
            (|t: Table| t.raw("waves", "[[\"api\"], [\"api\"]]")) as fn(Table) -> Table,
            "releases.shop.waves[1]",
        ),
        (
            |t: Table| t.raw("waves", "[[\"api\", \"db\"]]"),
            "releases.shop.waves[0]",
        ),
        (
            |t: Table| t.str("strategy", "nope"),
            "releases.shop.strategy",
        ),
        (
            |t: Table| t.raw("strategies", "{ db = \"canary\" }"),
            "releases.shop.strategies.db",
        ),
        // api has parameters for rolling only.
        (
            |t: Table| t.raw("strategies", "{ api = \"canary\" }"),
            "strategy `canary` needs parameters",
        ),
    ] {
        let config = fleet.config("[{ weight = 25 }]").release(
            "shop",
            &[&["api"]],
            "canary",
            |t| edit(t.raw("strategies", "{ api = \"rolling\" }")),
            Vec::new(),
        );
        fleet.env.write(&config);
        let (code, _, stderr) = fleet.env.deployer(&["validate"]).await;
        assert_eq!(code, 3, "{field}: {stderr}");
        assert!(stderr.contains(field), "{field}: {stderr}");
    }
    assert_eq!(
        fleet.live().await,
        ("web:1".into(), "web:1".into(), "web-blue".into()),
        "nothing changed"
    );
}

/// While a release runs, its services are locked for it — even one whose wave is done —
/// so neither a single-service run nor a second run of the release changes anything; a
/// CI cancel (SIGTERM) then takes all of it back, and a second SIGTERM during that
/// rollback does not stop it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_holds_its_services_and_sigterm_takes_it_all_back() {
    let fleet = Fleet::start().await;
    fleet
        .env
        .write(&fleet.config("[{ weight = 25, bake = \"1h\" }, { weight = 50 }]"));
    let child = fleet.env.spawn_captured(RELEASE);
    fleet
        .env
        .wait_for_weights("web at 25%", |(_, green)| green == 25)
        .await;

    let (code, _, stderr) = fleet.env.run("rolling", "api", "web:3").await;
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("belongs to run"), "{stderr}");
    let (code, _, stderr) = fleet.env.deployer(RELEASE).await;
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("already being deployed by"), "{stderr}");
    assert_eq!(
        fleet.env.api().await.0,
        "web:2",
        "api is left as the release put it"
    );

    let pid = child.id().unwrap() as i32;
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // SAFETY: as above; the child may still be taking the release back.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let out = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("rolled back"), "{stdout}");
    assert_eq!(
        fleet.live().await,
        ("web:1".into(), "web:1".into(), "web-blue".into())
    );
    // Every lock was given back: the release runs again.
    fleet.env.write(&fleet.config("[{ weight = 50 }]"));
    let (code, _, stderr) = fleet.env.deployer(RELEASE).await;
    assert_eq!(code, 0, "{stderr}");
}

/// A second CI job, or a person in a hurry, after a release's run was killed: changing
/// one of its services alone is refused (it would split the release); a rollback of the
/// release that fails (the config pointed `web` at the wrong region meanwhile) is retried
/// by the next one, which takes back what the first left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_release_is_taken_back_whole_and_a_failed_take_back_is_retried() {
    let fleet = Fleet::start().await;
    fleet
        .env
        .write(&fleet.config("[{ weight = 25, bake = \"60s\" }, { weight = 50 }]"));
    fleet
        .env
        .kill_when(RELEASE, "web at 25%", |(_, green)| green == 25)
        .await;
    assert_eq!(fleet.env.api().await.0, "web:2", "api went out in wave 1");

    let good = fleet.config("[{ weight = 25 }, { weight = 50 }]");
    fleet.env.write(&good);
    for args in [
        &["run", "rolling", "--service", "api", "--release", "web:3"][..],
        &["rollback", "--service", "web"][..],
    ] {
        let (code, _, stderr) = fleet.env.deployer(args).await;
        assert_eq!(code, 4, "{args:?}: {stderr}");
        assert!(
            stderr.contains("belongs to run")
                && stderr.contains("deployer rollback --release shop"),
            "{args:?}: {stderr}"
        );
    }
    assert_eq!(fleet.env.api().await.0, "web:2", "nothing changed");

    // web looked for in the wrong region: its take-back fails, the rest goes back.
    fleet.env.write(&good.clone().service("web", |s| {
        s.settings(|t| t.raw("aws", "{ region = \"eu-west-1\" }"))
    }));
    let (code, stdout, stderr) = fleet.env.deployer(&["rollback", "--release", "shop"]).await;
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert_eq!(fleet.env.weights().await, (75, 25), "web is still split");

    // Fixed: the next rollback takes back what is left.
    fleet.env.write(&good);
    let (code, stdout, stderr) = fleet.env.deployer(&["rollback", "--release", "shop"]).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(
        fleet.live().await,
        ("web:1".into(), "web:1".into(), "web-blue".into())
    );
    let (code, stdout, _) = fleet.env.deployer(&["rollback", "--release", "shop"]).await;
    assert_eq!(code, 0);
    assert!(stdout.contains("nothing to do"), "{stdout}");
}

/// A service that fails in a wave is named as the cause, not the sibling it cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_that_failed_first_is_named_not_the_sibling_it_cancelled() {
    let fleet = Fleet::start().await;
    fleet.env.write(&fleet.config("[{ weight = 25 }]"));
    let mut args = RELEASE.to_vec();
    // Launch template version 99 does not exist: bets fails in wave 1.
    args[6] = "bets=web:99";
    let (code, summary, stderr) = fleet.json(&args).await;
    assert_eq!(code, 1, "{summary:#}\n{stderr}");
    assert_eq!(summary["release"]["failed-service"], "bets", "{summary:#}");
    assert!(
        summary["release"]["rollback-reason"]
            .as_str()
            .unwrap()
            .starts_with("service `bets`"),
        "{summary:#}"
    );
    assert_eq!(
        fleet.live().await,
        ("web:1".into(), "web:1".into(), "web-blue".into())
    );
}
