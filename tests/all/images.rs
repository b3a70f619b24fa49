//! `deployer run --image` (issue #16): releases made from an image. On ECS a new revision
//! of the live task definition with only the named containers' images changed; on Auto
//! Scaling a new launch template version from the live one with only the AMI changed.
//! Re-running (a CI retry, a killed run resumed) reuses what the first attempt
//! registered instead of registering again.

use aws_sdk_ecs::types::{
    Compatibility, ContainerDefinition, CpuArchitecture, EphemeralStorage, KeyValuePair,
    NetworkMode, OsFamily, PortMapping, RuntimePlatform, Secret, Tag, TaskDefinition,
    TaskDefinitionField, Volume,
};
use deployer_targets::aws::Clients;
use deployer_tests::support::App;
use deployer_tests::support::cli::run;
use deployer_tests::support::env::{AsgEnv, EcsEnv};

/// Revisions of family `web` that ECS has.
async fn revisions(clients: &Clients) -> usize {
    clients
        .ecs
        .list_task_definitions()
        .family_prefix("web")
        .send()
        .await
        .unwrap()
        .task_definition_arns()
        .len()
}

/// A task definition as ECS describes it, with its tags.
async fn describe(clients: &Clients, name: &str) -> (TaskDefinition, Vec<Tag>) {
    let out = clients
        .ecs
        .describe_task_definition()
        .task_definition(name)
        .include(TaskDefinitionField::Tags)
        .send()
        .await
        .unwrap();
    (out.task_definition().unwrap().clone(), out.tags().to_vec())
}

/// Register web:4, a task definition as a production one looks: an app container with
/// environment and secrets, an Envoy sidecar, task size, roles, awsvpc, Fargate, ARM,
/// extra ephemeral storage, a volume and tags.
async fn register_rich_web(clients: &Clients) {
    let app = ContainerDefinition::builder()
        .name("web")
        .image("shop/web:4")
        .memory(256)
        .port_mappings(PortMapping::builder().container_port(8080).build())
        .environment(KeyValuePair::builder().name("STAGE").value("prod").build())
        .secrets(
            Secret::builder()
                .name("DB_PASSWORD")
                .value_from("arn:aws:secretsmanager:us-east-1:123456789012:secret:db")
                .build()
                .unwrap(),
        )
        .build();
    let sidecar = ContainerDefinition::builder()
        .name("envoy")
        .image("envoyproxy/envoy:v1.30")
        .memory(128)
        .essential(false)
        .build();
    clients
        .ecs
        .register_task_definition()
        .family("web")
        .container_definitions(app)
        .container_definitions(sidecar)
        .cpu("512")
        .memory("1024")
        .task_role_arn("arn:aws:iam::123456789012:role/web-task")
        .execution_role_arn("arn:aws:iam::123456789012:role/web-exec")
        .network_mode(NetworkMode::Awsvpc)
        .requires_compatibilities(Compatibility::Fargate)
        .runtime_platform(
            RuntimePlatform::builder()
                .cpu_architecture(CpuArchitecture::Arm64)
                .operating_system_family(OsFamily::Linux)
                .build(),
        )
        .ephemeral_storage(EphemeralStorage::builder().size_in_gib(30).build())
        .volumes(Volume::builder().name("cache").build())
        .tags(Tag::builder().key("team").value("shop").build())
        .send()
        .await
        .unwrap();
}

/// `definition` without what ECS assigns to each revision (ARN, revision, times).
fn unassigned(definition: &TaskDefinition) -> TaskDefinition {
    let mut d = definition.clone();
    d.task_definition_arn = None;
    d.revision = 0;
    d.registered_at = None;
    d.registered_by = None;
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_becomes_a_revision_that_changes_only_that_containers_image() {
    let good = App::start(200, "ok");
    let env = EcsEnv::with_task_sets(&good.url, "[ { weight = 50 } ]").await;
    register_rich_web(&env.clients).await;
    let (code, out, err) = env.deployer(&["run", "canary", "--release", "web:4"]).await;
    assert_eq!(code, 0, "{out}\n{err}");

    // Two containers: a plain image is refused, naming them and the fix.
    let (code, out, err) = env
        .deployer(&["run", "canary", "--image", "shop/web:sha-5"])
        .await;
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(
        err.contains("task definition web:4 has 2 containers (web, envoy)")
            && err.contains("--image web=shop/web:sha-5"),
        "{err}"
    );
    // A container it does not have is refused, naming those it has.
    let (code, out, err) = env
        .deployer(&["run", "canary", "--image", "app=shop/web:sha-5"])
        .await;
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(
        err.contains("--image `app=shop/web:sha-5`: task definition web:4 has no container `app`")
            && err.contains("web, envoy"),
        "{err}"
    );
    assert_eq!(revisions(&env.clients).await, 4, "nothing registered");
    assert_eq!(env.primary().await, ("web:4".to_string(), 1));

    let (code, out, err) = env
        .deployer(&["run", "canary", "--image", "web=shop/web:sha-5"])
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("registered web:5 from web:4 with image web=shop/web:sha-5"),
        "{err}"
    );
    assert!(
        out.contains("release:  web:4 → web:5")
            && out.contains("image:    registered web:5 from web:4 with image web=shop/web:sha-5"),
        "{out}"
    );
    assert_eq!(env.primary().await, ("web:5".to_string(), 1));
    assert_eq!(
        env.weights().await,
        (100, 0),
        "web:4 went on green, web:5 on blue"
    );

    // The new revision is the old one, field for field, but for that one image.
    let (old, old_tags) = describe(&env.clients, "web:4").await;
    let (new, new_tags) = describe(&env.clients, "web:5").await;
    assert_eq!(new.revision(), 5);
    let images = |d: &TaskDefinition| -> Vec<(String, String)> {
        d.container_definitions()
            .iter()
            .map(|c| {
                (
                    c.name().unwrap().to_string(),
                    c.image().unwrap().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(
        images(&new),
        [
            ("web".to_string(), "shop/web:sha-5".to_string()),
            ("envoy".to_string(), "envoyproxy/envoy:v1.30".to_string())
        ]
    );
    let mut expected = unassigned(&old);
    expected.container_definitions.as_mut().unwrap()[0].image = Some("shop/web:sha-5".into());
    assert_eq!(unassigned(&new), expected);
    assert_eq!(new_tags, old_tags);
    assert!(
        !old_tags.is_empty() && old.container_definitions()[0].secrets().len() == 1,
        "the comparison covers tags and secrets: {old:?}"
    );

    let (_, history, _) = env.deployer(&["history"]).await;
    assert!(history.contains("web:5"), "{history}");

    // The same image again is live already: nothing registered, nothing deployed.
    let (code, out, err) = env
        .deployer(&[
            "run",
            "canary",
            "--image",
            "web=shop/web:sha-5",
            "--output",
            "json",
        ])
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("web:5 already runs image web=shop/web:sha-5"),
        "{err}"
    );
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(summary["result"], "unchanged", "{out}");
    assert_eq!(summary["image-release"]["made"], "live", "{out}");
    assert_eq!(revisions(&env.clients).await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_image_run_resumed_deploys_the_revision_it_registered_without_a_second() {
    let good = App::start(200, "ok");
    let env = EcsEnv::start(&[]).await;
    env.write(
        &env.task_sets(&good.url, r#"[{ weight = 10, bake = "2s" }]"#)
            .service("web", |s| s.settings(|t| t.str("on-interrupted", "resume"))),
    );
    let args = ["run", "canary", "--image", "shop/web:sha-9"];
    env.kill_when(&args, "the canary never shifted traffic", |(_, green)| {
        green > 0
    })
    .await;
    assert_eq!(revisions(&env.clients).await, 4, "web:4 registered");

    let child = env.spawn_captured(&args);
    let out = child.wait_with_output().await.unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("reusing web:4: it is web:1 with image shop/web:sha-9 already"),
        "{stderr}"
    );
    assert!(
        stdout.contains("recovered unfinished deployment"),
        "the same request, resumed: {stdout}"
    );
    assert_eq!(revisions(&env.clients).await, 4, "no second registration");
    assert_eq!(env.primary().await, ("web:4".to_string(), 1));
    assert_eq!(env.weights().await, (0, 100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_rolls_out_in_place_on_the_default_controller() {
    let good = App::start(200, "ok");
    let env = EcsEnv::start(&[]).await;
    env.write(&env.in_place(&good.url));
    let (code, out, err) = env
        .deployer(&["run", "rolling", "--image", "web=shop/web:sha-7"])
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("registered web:4 from web:1 with image web=shop/web:sha-7"),
        "{err}"
    );
    let (service, primary, state) = env.api().await;
    assert_eq!((service.as_str(), primary.as_str()), ("web:4", "web:4"));
    assert_eq!(state, "COMPLETED");
    let (new, _) = describe(&env.clients, "web:4").await;
    assert_eq!(
        new.container_definitions()[0].image(),
        Some("shop/web:sha-7")
    );
    // Rolled back by hand, then the same image again: web:4 is reused, not web:5 made.
    let (code, out, err) = env.deployer(&["rollback"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(env.api().await.0, "web:1");
    let (code, out, err) = env
        .deployer(&["run", "rolling", "--image", "shop/web:sha-7"])
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("reusing web:4"), "{err}");
    assert_eq!(env.api().await.0, "web:4");
    assert_eq!(revisions(&env.clients).await, 4);
}

/// Data of version `version` of launch template `web`.
async fn template_data(
    clients: &Clients,
    version: &str,
) -> aws_sdk_ec2::types::ResponseLaunchTemplateData {
    clients
        .ec2
        .describe_launch_template_versions()
        .launch_template_name("web")
        .versions(version)
        .send()
        .await
        .unwrap()
        .launch_template_versions()[0]
        .launch_template_data()
        .unwrap()
        .clone()
}

async fn template_versions(clients: &Clients) -> usize {
    clients
        .ec2
        .describe_launch_template_versions()
        .launch_template_name("web")
        .send()
        .await
        .unwrap()
        .launch_template_versions()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ami_becomes_a_launch_template_version_that_changes_only_the_image() {
    const AMI: &str = "ami-0123456789abcdef0";
    let env = AsgEnv::start().await;
    let good = App::start(200, "ok");
    env.write(&env.groups(&good.url, "[{ weight = 50 }]"));
    let (code, out, err) = env
        .deployer(&["run", "canary", "--service", "web", "--image", AMI])
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains(&format!("registered web:4 from web:1 with image {AMI}")),
        "{err}"
    );
    assert_eq!(env.weights().await, (0, 100));
    assert_eq!(
        env.group("web-green")
            .await
            .versions
            .keys()
            .collect::<Vec<_>>(),
        ["4"]
    );
    // Version 4 is version 1 (t3.micro), not the newest (3, t3.medium), but its AMI.
    let mut expected = template_data(&env.clients, "1").await;
    expected.image_id = Some(AMI.into());
    assert_eq!(template_data(&env.clients, "4").await, expected);
    assert_eq!(expected.instance_type().unwrap().as_str(), "t3.micro");

    // Again: the AMI is live, nothing is created.
    let (code, out, err) = env
        .deployer(&["run", "canary", "--service", "web", "--image", AMI])
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("already live"), "{out}");
    assert_eq!(template_versions(&env.clients).await, 4);

    // Container names mean nothing to a group; nor does a container image.
    for (image, words) in [
        (
            format!("web={AMI}"),
            "an Auto Scaling group runs one AMI, not containers",
        ),
        ("shop/web:2".to_string(), "is not an AMI id"),
    ] {
        let (code, out, err) = env
            .deployer(&["run", "canary", "--service", "web", "--image", &image])
            .await;
        assert_eq!(code, 3, "{out}\n{err}");
        assert!(err.contains(words) && err.contains(&image), "{err}");
    }
    assert_eq!(template_versions(&env.clients).await, 4);
}

#[test]
fn release_and_image_are_one_or_the_other() {
    let (code, _, err) = run(&[
        "run",
        "canary",
        "--release",
        "web:2",
        "--image",
        "shop/web:2",
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("give one --release, or --image (repeated per container), not both"),
        "{err}"
    );
    // Two releases, or a manifest, are for a release of several services.
    for args in [
        &["run", "canary", "--release", "web:2", "--release", "web:3"][..],
        &["run", "canary", "--manifest", "m.json"][..],
        &["run", "canary", "web", "--release", "web:2"][..],
    ] {
        let (code, _, err) = run(args);
        assert_eq!(code, 3, "{args:?}: {err}");
        assert!(err.contains("deployer run"), "{args:?}: {err}");
    }
    let (code, _, err) = run(&["run", "canary"]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("--release <[SERVICE=]RELEASE>|--image"),
        "{err}"
    );
    // Several images without container names are refused before any config is read.
    let (code, _, err) = run(&[
        "run",
        "canary",
        "--config",
        "/nonexistent/deployer.toml",
        "--image",
        "a:1",
        "--image",
        "b:2",
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("--image `a:1` names no container") && err.contains("--image CONTAINER=IMAGE"),
        "{err}"
    );
}
