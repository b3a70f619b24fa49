//! Releases made from images (`deployer run --image`): CI has just pushed an image and
//! wants it deployed, not a task definition or launch template version someone had to
//! register by hand first.
//!
//! The new release is the live one with only the images changed: on ECS a new revision
//! of the live task definition's family, on Auto Scaling a new version of the live
//! launch template (from the live version, only `ImageId` changed). Everything else
//! (environment, secrets, sidecars, sizes, roles, tags) is the live release's, so an
//! image deploy never quietly undoes a setting changed outside deployer.
//!
//! Registering is idempotent: if the family's newest ACTIVE revision (the template's
//! newest version) is exactly what would be registered, it is reused. A CI retry, or a
//! killed run resumed by `on-interrupted = "resume"`, thus deploys the very release the
//! first attempt journaled instead of registering revision after revision — and the
//! engine recognises that release as the one its journal names.

use aws_sdk_ecs::operation::register_task_definition::builders::RegisterTaskDefinitionFluentBuilder;
use aws_sdk_ecs::types::{Tag, TaskDefinition, TaskDefinitionField};

use super::{Clients, classify};
use deployer_engine::driver::DriverError;

/// The most containers `--image` may name: ECS allows at most 10 per task definition.
pub const MAX_IMAGES: usize = 10;

/// What `--image` asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Images {
    /// `--image IMAGE`: the release's only container (or AMI) gets this image.
    One(String),
    /// `--image CONTAINER=IMAGE`, one or more: these containers get these images.
    Named(Vec<(String, String)>),
}

impl Images {
    /// The `--image` values as given, each checked. Image references never contain `=`
    /// (registry, repository, tag and digest cannot), so the first `=` separates a
    /// container name from its image.
    ///
    /// # Errors
    /// A refusal naming the value and the fix.
    pub fn parse(values: &[String]) -> Result<Images, String> {
        let mut named = Vec::new();
        let mut plain = Vec::new();
        for value in values {
            match value.split_once('=') {
                Some((container, image)) => {
                    check_container(value, container)?;
                    check_image(value, image)?;
                    if named.iter().any(|(c, _): &(String, String)| c == container) {
                        return Err(format!(
                            "--image `{value}`: container `{container}` is named twice; give each container one image"
                        ));
                    }
                    named.push((container.to_string(), image.to_string()));
                }
                None => {
                    check_image(value, value)?;
                    plain.push(value.clone());
                }
            }
        }
        match (plain.as_slice(), named.is_empty()) {
            ([], true) => Err("--image needs a value: IMAGE or CONTAINER=IMAGE".into()),
            ([one], true) => Ok(Images::One(one.clone())),
            ([], false) if named.len() > MAX_IMAGES => Err(format!(
                "--image is given {} times; a task definition has at most {MAX_IMAGES} containers",
                named.len()
            )),
            ([], false) => Ok(Images::Named(named)),
            (plain, _) => Err(format!(
                "--image `{}` names no container, beside {} other --image value(s): with more than one \
                 --image, name each container: --image CONTAINER=IMAGE",
                plain[0],
                values.len() - 1
            )),
        }
    }

    /// The images as the summary shows them: `app=repo:sha`, or just the image.
    pub fn describe(&self) -> String {
        match self {
            Images::One(image) => image.clone(),
            Images::Named(named) => named
                .iter()
                .map(|(c, i)| format!("{c}={i}"))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// A refused value as a message quotes it: the first 100 characters (it may be
/// megabytes long).
fn shown(value: &str) -> String {
    match value.char_indices().nth(100) {
        Some((end, _)) => format!("{}…", &value[..end]),
        None => value.to_string(),
    }
}

/// ECS's rule for container names: 1 to 255 letters, digits, hyphens and underscores.
fn check_container(value: &str, container: &str) -> Result<(), String> {
    if container.is_empty()
        || container.len() > 255
        || !container
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        let (value, container) = (shown(value), shown(container));
        return Err(format!(
            "--image `{value}`: `{container}` is not a container name (ECS allows 1 to 255 letters, \
             digits, hyphens and underscores); write --image CONTAINER=IMAGE"
        ));
    }
    Ok(())
}

/// ECS's rule for images: 1 to 255 letters, digits, hyphens, underscores, colons,
/// periods, slashes and number signs, plus `@` for digests (`repo@sha256:…`).
fn check_image(value: &str, image: &str) -> Result<(), String> {
    if image.is_empty()
        || image.len() > 255
        || !image
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_:./#@".contains(&b))
    {
        let (value, image) = (shown(value), shown(image));
        return Err(format!(
            "--image `{value}`: `{image}` is not an image reference (1 to 255 letters, digits and \
             - _ : . / # @, e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com/web:sha-3f2a1c)"
        ));
    }
    Ok(())
}

/// How the release came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Made {
    /// Registered now.
    Registered,
    /// The newest revision (version) already was exactly this: reused, nothing registered.
    Reused,
    /// The live release already runs these images: nothing to register or deploy.
    Live,
    /// The image is the release (EKS): nothing to register.
    Image,
}

/// The release `--image` deploys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRelease {
    /// The release to deploy, pinned (`web:8`, `web:4`, or the image).
    pub release: String,
    /// The live release it was made from (`web:7`).
    pub from: String,
    pub made: Made,
    /// What changed, `container=image` (just the image where there is one).
    pub images: String,
}

/// Why no release could be made.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The `--image` values do not fit the live release: bad input, nothing changed.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Driver(#[from] DriverError),
}

/// A task definition as `describe-task-definition --include TAGS` reports it.
async fn describe_task_definition(
    clients: &Clients,
    name: &str,
) -> Result<(TaskDefinition, Vec<Tag>), DriverError> {
    let out = clients
        .ecs
        .describe_task_definition()
        .task_definition(name)
        .include(TaskDefinitionField::Tags)
        .send()
        .await
        .map_err(|e| classify(&format!("describing task definition `{name}`"), e))?;
    let definition = out
        .task_definition()
        .cloned()
        .ok_or_else(|| DriverError::Failed(format!("ECS knows no task definition `{name}`")))?;
    Ok((definition, out.tags().to_vec()))
}

/// `family:revision` of `definition`.
fn revision_of(definition: &TaskDefinition) -> String {
    format!(
        "{}:{}",
        definition.family().unwrap_or_default(),
        definition.revision()
    )
}

/// The registration of a task definition exactly like `definition`: every field
/// RegisterTaskDefinition accepts, copied. What only ECS sets (ARN, revision, status,
/// compatibilities, requires-attributes, registration times) is left out, as are tags
/// under the reserved `aws:` prefix, which no one may write. Tags are sorted, so two
/// registrations compare equal whatever order ECS listed them in.
fn registration(
    ecs: &aws_sdk_ecs::Client,
    definition: &TaskDefinition,
    tags: &[Tag],
) -> RegisterTaskDefinitionFluentBuilder {
    let mut tags: Vec<Tag> = tags
        .iter()
        .filter(|t| !t.key().unwrap_or_default().starts_with("aws:"))
        .cloned()
        .collect();
    tags.sort_by(|a, b| a.key().cmp(&b.key()));
    let d = definition.clone();
    // Elastic Inference is deprecated, but a definition that still names accelerators
    // keeps them: dropping a field silently would be a change nobody asked for.
    #[allow(deprecated)]
    ecs.register_task_definition()
        .set_family(d.family)
        .set_task_role_arn(d.task_role_arn)
        .set_execution_role_arn(d.execution_role_arn)
        .set_network_mode(d.network_mode)
        .set_container_definitions(d.container_definitions)
        .set_volumes(d.volumes)
        .set_placement_constraints(d.placement_constraints)
        .set_requires_compatibilities(d.requires_compatibilities)
        .set_cpu(d.cpu)
        .set_memory(d.memory)
        .set_tags((!tags.is_empty()).then_some(tags))
        .set_pid_mode(d.pid_mode)
        .set_ipc_mode(d.ipc_mode)
        .set_proxy_configuration(d.proxy_configuration)
        .set_inference_accelerators(d.inference_accelerators)
        .set_ephemeral_storage(d.ephemeral_storage)
        .set_runtime_platform(d.runtime_platform)
        .set_enable_fault_injection(d.enable_fault_injection)
}

/// `definition` with `images` applied: its container definitions and, per container
/// that changes, `name=image`. Refused when `images` does not fit its containers.
fn apply_images(
    definition: &TaskDefinition,
    images: &Images,
) -> Result<(Vec<aws_sdk_ecs::types::ContainerDefinition>, Vec<String>), ImageError> {
    let live = revision_of(definition);
    let mut containers = definition.container_definitions().to_vec();
    let names: Vec<String> = containers
        .iter()
        .filter_map(|c| c.name().map(str::to_string))
        .collect();
    let wanted: Vec<(String, String)> = match images {
        Images::One(image) => match names.as_slice() {
            [only] => vec![(only.to_string(), image.clone())],
            _ => {
                return Err(ImageError::Refused(format!(
                    "--image `{image}`: task definition {live} has {} containers ({}); name the one \
                     to change: --image CONTAINER={image} (e.g. --image {}={image})",
                    names.len(),
                    names.join(", "),
                    names.first().map_or("app", String::as_str)
                )));
            }
        },
        Images::Named(named) => named.clone(),
    };
    let mut changed = Vec::new();
    for (name, image) in &wanted {
        let container = containers
            .iter_mut()
            .find(|c| c.name() == Some(name.as_str()))
            .ok_or_else(|| {
                ImageError::Refused(format!(
                    "--image `{name}={image}`: task definition {live} has no container `{name}`; its \
                     containers are {}",
                    names.join(", ")
                ))
            })?;
        if container.image() != Some(image.as_str()) {
            container.image = Some(image.clone());
            changed.push(format!("{name}={image}"));
        }
    }
    Ok((containers, changed))
}

/// The ECS release for `images`: a revision of `live_release`'s family that differs
/// from it only in those containers' images — registered, or the family's newest
/// ACTIVE revision when that is already exactly it; or the live release itself when it
/// runs these images already.
///
/// # Errors
/// Refused: `--image IMAGE` for a task definition of several containers, or a
/// container it does not have. AWS errors.
pub async fn register_image_release(
    clients: &Clients,
    live_release: &str,
    images: &Images,
) -> Result<ImageRelease, ImageError> {
    if live_release.is_empty() {
        return Err(ImageError::Refused(format!(
            "--image `{}`: the service runs no task definition to take the rest of the release from; \
             deploy a task definition once with --release",
            images.describe()
        )));
    }
    let (live, tags) = describe_task_definition(clients, live_release).await?;
    let from = revision_of(&live);
    let (containers, changed) = apply_images(&live, images)?;
    let made = |release: String, made| ImageRelease {
        release,
        from: from.clone(),
        made,
        images: images.describe(),
    };
    if changed.is_empty() {
        return Ok(made(from.clone(), Made::Live));
    }
    let wanted =
        registration(&clients.ecs, &live, &tags).set_container_definitions(Some(containers));
    // A family name alone describes its newest ACTIVE revision.
    let family = live.family().unwrap_or_default();
    let (newest, newest_tags) = describe_task_definition(clients, family).await?;
    if newest.revision() != live.revision()
        && registration(&clients.ecs, &newest, &newest_tags).as_input() == wanted.as_input()
    {
        return Ok(made(revision_of(&newest), Made::Reused));
    }
    let out = wanted
        .send()
        .await
        .map_err(|e| classify(&format!("registering a revision of `{family}`"), e))?;
    let registered = out.task_definition().ok_or_else(|| {
        DriverError::Failed(format!(
            "ECS registered a revision of `{family}` but did not say which"
        ))
    })?;
    Ok(made(revision_of(registered), Made::Registered))
}

/// `ami-` and 8 or 17 hex digits.
fn is_ami(image: &str) -> bool {
    image.strip_prefix("ami-").is_some_and(|hex| {
        matches!(hex.len(), 8 | 17) && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// One version of a launch template, named by `template` (a name, or an `lt-` id).
async fn template_version(
    clients: &Clients,
    template: &str,
    version: &str,
) -> Result<aws_sdk_ec2::types::LaunchTemplateVersion, DriverError> {
    let call = clients
        .ec2
        .describe_launch_template_versions()
        .versions(version);
    let call = if template.starts_with("lt-") {
        call.launch_template_id(template)
    } else {
        call.launch_template_name(template)
    };
    let out = call.send().await.map_err(|e| {
        classify(
            &format!("describing version {version} of launch template `{template}`"),
            e,
        )
    })?;
    out.launch_template_versions()
        .first()
        .cloned()
        .ok_or_else(|| {
            DriverError::Failed(format!(
                "launch template `{template}` has no version {version}"
            ))
        })
}

/// The Auto Scaling release for `--image ami-…`: a version of the live launch
/// template made from the live version with only `ImageId` changed — created, or the
/// template's newest version when that is already exactly it; or the live release when
/// it runs this AMI already. `live_release` is `template:version`.
///
/// # Errors
/// Refused: container names (groups run AMIs, not containers), or not an AMI id. AWS
/// errors.
pub async fn launch_template_release(
    clients: &Clients,
    live_release: &str,
    images: &Images,
) -> Result<ImageRelease, ImageError> {
    let ami = match images {
        Images::One(ami) => ami,
        Images::Named(named) => {
            let (container, image) = &named[0];
            return Err(ImageError::Refused(format!(
                "--image `{container}={image}`: an Auto Scaling group runs one AMI, not containers; \
                 write --image ami-… (the AMI id alone)"
            )));
        }
    };
    if !is_ami(ami) {
        return Err(ImageError::Refused(format!(
            "--image `{ami}` is not an AMI id (ami- and 8 or 17 hex digits): an Auto Scaling \
             group's release is a launch template version, made from an AMI"
        )));
    }
    let (template, version) = live_release.rsplit_once(':').ok_or_else(|| {
        DriverError::Failed(format!(
            "the live release `{live_release}` is not TEMPLATE:VERSION"
        ))
    })?;
    let live = template_version(clients, template, version).await?;
    let made = |release: String, made| ImageRelease {
        release,
        from: live_release.to_string(),
        made,
        images: ami.clone(),
    };
    let mut wanted = live.launch_template_data().cloned().ok_or_else(|| {
        DriverError::Failed(format!(
            "EC2 reported no data for version {version} of launch template `{template}`"
        ))
    })?;
    if wanted.image_id() == Some(ami.as_str()) {
        return Ok(made(live_release.to_string(), Made::Live));
    }
    wanted.image_id = Some(ami.clone());
    let newest = template_version(clients, template, "$Latest").await?;
    if newest.version_number() != live.version_number()
        && newest.launch_template_data() == Some(&wanted)
        && let Some(number) = newest.version_number()
    {
        return Ok(made(format!("{template}:{number}"), Made::Reused));
    }
    // From the live version, so everything but the AMI is the live release's.
    let call = clients
        .ec2
        .create_launch_template_version()
        .source_version(version)
        .version_description(format!("deployer: {ami} from version {version}"))
        .launch_template_data(
            aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
                .image_id(ami)
                .build(),
        );
    let call = if template.starts_with("lt-") {
        call.launch_template_id(template)
    } else {
        call.launch_template_name(template)
    };
    let out = call.send().await.map_err(|e| {
        classify(
            &format!("creating a version of launch template `{template}`"),
            e,
        )
    })?;
    let number = out
        .launch_template_version()
        .and_then(|v| v.version_number())
        .ok_or_else(|| {
            DriverError::Failed(format!(
                "EC2 created a version of launch template `{template}` but did not say which"
            ))
        })?;
    Ok(made(format!("{template}:{number}"), Made::Registered))
}

/// The EKS release for `images`: the image itself (an EKS release is an image).
/// `container` is the container the target deploys, when configured.
///
/// # Errors
/// Refused: several containers, or one that is not the target's.
pub fn image_release(
    live_release: &str,
    container: Option<&str>,
    images: &Images,
) -> Result<ImageRelease, ImageError> {
    let image = match (images, container) {
        (Images::One(image), _) => image,
        (Images::Named(named), Some(target)) if named.len() == 1 && named[0].0 == target => {
            &named[0].1
        }
        (Images::Named(_), _) => {
            return Err(ImageError::Refused(format!(
                "--image `{}`: this EKS service deploys one image to {}; write --image IMAGE",
                images.describe(),
                container.map_or("its Deployment's only container".to_string(), |c| {
                    format!("container `{c}`")
                }),
            )));
        }
    };
    Ok(ImageRelease {
        release: image.clone(),
        from: live_release.to_string(),
        made: Made::Image,
        images: image.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::types::{
        Compatibility, ContainerDefinition, CpuArchitecture, EphemeralStorage, IpcMode,
        NetworkMode, OsFamily, PidMode, ProxyConfiguration, RuntimePlatform,
        TaskDefinitionPlacementConstraint, Volume,
    };

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn image_values_parse_into_one_image_or_named_containers() {
        assert_eq!(
            Images::parse(&strings(&["repo/web:sha-1"])),
            Ok(Images::One("repo/web:sha-1".into()))
        );
        assert_eq!(
            Images::parse(&strings(&["app=repo/web@sha256:ab12", "log=fluent:2"])),
            Ok(Images::Named(vec![
                ("app".into(), "repo/web@sha256:ab12".into()),
                ("log".into(), "fluent:2".into())
            ]))
        );
        let long = format!("app={}", "x".repeat(100_000));
        for (values, words) in [
            (vec![long.as_str()], "is not an image reference"),
            (vec!["a:1", "b:2"], "name each container"),
            (vec!["a:1", "app=b:2"], "name each container"),
            (vec!["app=a:1", "app=b:2"], "named twice"),
            (vec!["=a:1"], "is not a container name"),
            (vec!["app="], "is not an image reference"),
            (vec!["web latest"], "is not an image reference"),
            (vec!["app=x\n::error::forged"], "is not an image reference"),
        ] {
            let err = Images::parse(&strings(&values)).unwrap_err();
            assert!(err.contains(words), "{values:?}: {err}");
            assert!(err.len() < 600, "{err}");
            assert!(err.contains("--image"), "{err}");
        }
    }

    #[test]
    fn on_eks_the_image_is_the_release_and_only_the_targets_container_may_be_named() {
        let one = Images::One("shop/web:2".into());
        assert_eq!(image_release("", None, &one).unwrap().release, "shop/web:2");
        let named = |c: &str| Images::Named(vec![(c.into(), "shop/web:2".into())]);
        let made = image_release("", Some("web"), &named("web")).unwrap();
        assert_eq!(
            (made.release.as_str(), made.made),
            ("shop/web:2", Made::Image)
        );
        for (container, images) in [(Some("web"), named("envoy")), (None, named("web"))] {
            let err = image_release("", container, &images)
                .unwrap_err()
                .to_string();
            assert!(err.contains("write --image IMAGE"), "{err}");
        }
    }

    #[test]
    fn amis_are_ami_and_8_or_17_hex_digits() {
        assert!(is_ami("ami-12c6146b"));
        assert!(is_ami("ami-0123456789abcdef0"));
        assert!(!is_ami("ami-12c614"));
        assert!(!is_ami("repo/web:1"));
    }

    /// A task definition with every field RegisterTaskDefinition accepts set.
    #[allow(deprecated)] // Elastic Inference: still a field, so still copied
    fn full_definition() -> TaskDefinition {
        TaskDefinition::builder()
            .family("web")
            .revision(7)
            .task_role_arn("arn:aws:iam::1:role/task")
            .execution_role_arn("arn:aws:iam::1:role/exec")
            .network_mode(NetworkMode::Awsvpc)
            .container_definitions(
                ContainerDefinition::builder()
                    .name("app")
                    .image("repo/web:1")
                    .build(),
            )
            .volumes(Volume::builder().name("data").build())
            .placement_constraints(TaskDefinitionPlacementConstraint::builder().build())
            .requires_compatibilities(Compatibility::Fargate)
            .cpu("256")
            .memory("512")
            .pid_mode(PidMode::Task)
            .ipc_mode(IpcMode::Task)
            .proxy_configuration(
                ProxyConfiguration::builder()
                    .container_name("envoy")
                    .build()
                    .unwrap(),
            )
            .inference_accelerators(
                aws_sdk_ecs::types::InferenceAccelerator::builder()
                    .device_name("d")
                    .device_type("t")
                    .build()
                    .unwrap(),
            )
            .ephemeral_storage(EphemeralStorage::builder().size_in_gib(30).build())
            .runtime_platform(
                RuntimePlatform::builder()
                    .cpu_architecture(CpuArchitecture::Arm64)
                    .operating_system_family(OsFamily::Linux)
                    .build(),
            )
            .enable_fault_injection(true)
            .build()
    }

    fn client() -> aws_sdk_ecs::Client {
        aws_sdk_ecs::Client::from_conf(
            aws_sdk_ecs::Config::builder()
                .behavior_version(aws_sdk_ecs::config::BehaviorVersion::latest())
                .build(),
        )
    }

    /// Guards the copy against SDK upgrades: a field RegisterTaskDefinition gains is
    /// `None` in the registration until `registration` copies it, and this fails.
    #[test]
    #[allow(deprecated)] // Elastic Inference: still a field, so still copied
    fn a_registration_copies_every_field_register_task_definition_accepts() {
        let tags = [Tag::builder().key("team").value("bets").build()];
        let input = format!(
            "{:?}",
            registration(&client(), &full_definition(), &tags).as_input()
        );
        let unset: Vec<&str> = top_level_fields(&input)
            .into_iter()
            .filter(|(_, value)| *value == "None")
            .map(|(name, _)| name)
            .collect();
        assert_eq!(unset, Vec::<&str>::new(), "fields not copied: {input}");
        assert_eq!(top_level_fields(&input).len(), 18, "{input}");
    }

    /// `(name, value)` of each field of `Name { a: x, b: Some([..]) }` (a `Debug`
    /// rendering), nested values left whole.
    fn top_level_fields(debug: &str) -> Vec<(&str, &str)> {
        let body = &debug[debug.find('{').unwrap() + 1..debug.rfind('}').unwrap()];
        let (mut fields, mut depth, mut start, mut quoted) = (Vec::new(), 0, 0, false);
        for (i, c) in body.char_indices() {
            match c {
                '"' => quoted = !quoted,
                '{' | '[' | '(' if !quoted => depth += 1,
                '}' | ']' | ')' if !quoted => depth -= 1,
                ',' if !quoted && depth == 0 => {
                    fields.push(&body[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        fields.push(&body[start..]);
        fields
            .into_iter()
            .filter_map(|f| f.trim().split_once(": "))
            .collect()
    }

    #[test]
    fn registrations_compare_without_reserved_tags_and_tag_order() {
        let tag = |k: &str| Tag::builder().key(k).value("v").build();
        let d = full_definition();
        let a = registration(
            &client(),
            &d,
            &[tag("b"), tag("a"), tag("aws:cloudformation")],
        );
        let b = registration(&client(), &d, &[tag("a"), tag("b")]);
        assert_eq!(a.as_input(), b.as_input());
        let c = registration(&client(), &d, &[tag("a")]);
        assert_ne!(a.as_input(), c.as_input());
    }

    #[test]
    fn images_change_only_the_named_containers_and_refuse_what_does_not_fit() {
        let two = TaskDefinition::builder()
            .family("web")
            .revision(7)
            .container_definitions(
                ContainerDefinition::builder()
                    .name("app")
                    .image("a:1")
                    .build(),
            )
            .container_definitions(
                ContainerDefinition::builder()
                    .name("envoy")
                    .image("e:1")
                    .build(),
            )
            .build();
        let (containers, changed) =
            apply_images(&two, &Images::Named(vec![("app".into(), "a:2".into())])).unwrap();
        assert_eq!(changed, ["app=a:2"]);
        assert_eq!(containers[0].image(), Some("a:2"));
        assert_eq!(containers[1], two.container_definitions()[1]);
        let err = apply_images(&two, &Images::One("a:2".into()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("web:7 has 2 containers (app, envoy)") && err.contains("--image app=a:2"),
            "{err}"
        );
        let err = apply_images(&two, &Images::Named(vec![("db".into(), "a:2".into())]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no container `db`") && err.contains("app, envoy"),
            "{err}"
        );
        let (_, changed) =
            apply_images(&two, &Images::Named(vec![("app".into(), "a:1".into())])).unwrap();
        assert!(changed.is_empty(), "the live image is no change");
    }
}
