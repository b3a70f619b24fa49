//! What a release run deploys to each service: `--release SERVICE=RELEASE`, `--image
//! SERVICE=IMAGE` (or `SERVICE=CONTAINER=IMAGE`), or a JSON manifest from CI
//! (`--manifest FILE`). Checked whole before anything is read from AWS: a typo in one
//! service's value refuses the release with nothing changed.

use std::collections::BTreeMap;
use std::path::Path;

use deployer_engine::files::{self, Kind};
use deployer_engine::redact::printable;
use deployer_targets::aws::images::Images;
use serde::Deserialize;

use crate::config::ReleaseConfig;
use crate::exit::BadInput;

/// What one service of the release is deployed to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wanted {
    Release(String),
    Images(Images),
}

/// `--manifest`: `{"services": {"api": {"image": "…"}, "web": {"release": "web:42"},
/// "worker": {"images": {"app": "…", "sidecar": "…"}}}}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    services: BTreeMap<String, ManifestEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestEntry {
    #[serde(default)]
    release: Option<String>,
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    images: Option<BTreeMap<String, String>>,
}

/// `SERVICE=REST`, split at the first `=` (no service name holds one).
fn split<'v>(flag: &str, value: &'v str, example: &str) -> Result<(&'v str, &'v str), BadInput> {
    match value.split_once('=') {
        Some((service, rest)) if !service.is_empty() && !rest.is_empty() => Ok((service, rest)),
        _ => Err(BadInput(format!(
            "{flag} `{}`: a release names the service each value is for\n  fix: {flag} \
             SERVICE={example}",
            printable(&value.chars().take(100).collect::<String>())
        ))),
    }
}

/// Every service's value, checked against the release `name`.
///
/// # Errors
/// A value for a service outside the release, a service named twice, no service at all,
/// a manifest that cannot be read or is not of the shape above, a bad image reference.
pub fn parse(
    name: &str,
    release: &ReleaseConfig,
    releases: &[String],
    images: &[String],
    manifest: Option<&Path>,
) -> Result<BTreeMap<String, Wanted>, BadInput> {
    let mut wanted = BTreeMap::new();
    let mut image_values: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut add = |service: &str, value: Wanted, source: &str| {
        if wanted.insert(service.to_string(), value).is_some() {
            return Err(BadInput(format!(
                "{source}: service `{}` is given two releases\n  fix: give each service one \
                 --release, --image (repeated per container) or manifest entry",
                printable(service)
            )));
        }
        Ok(())
    };
    for value in releases {
        let (service, rel) = split("--release", value, "RELEASE (e.g. api=api:42)")?;
        crate::cli::run::check_release(rel)?;
        add(service, Wanted::Release(rel.to_string()), "--release")?;
    }
    for value in images {
        let (service, image) = split("--image", value, "[CONTAINER=]IMAGE")?;
        image_values
            .entry(service.to_string())
            .or_default()
            .push(image.to_string());
    }
    for (service, values) in &image_values {
        let images = Images::parse(values)
            .map_err(|e| BadInput(format!("--image for service `{}`: {e}", printable(service))))?;
        add(service, Wanted::Images(images), "--image")?;
    }
    if let Some(path) = manifest {
        let shown = printable(&path.display().to_string()).into_owned();
        let text = files::read_text(path, Kind::Scenario).map_err(|err| {
            BadInput(format!(
                "--manifest {shown}: cannot read it: {err}\n  fix: pass the JSON file CI wrote"
            ))
        })?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|err| {
            BadInput(format!(
                "--manifest {shown}: {err}\n  fix: write {{\"services\": {{\"api\": {{\"image\": \
                 \"…\"}}, \"web\": {{\"release\": \"web:42\"}}}}}} (per service one of \
                 `release`, `image` or `images` {{CONTAINER: IMAGE}})"
            ))
        })?;
        for (service, entry) in manifest.services {
            let at = format!("--manifest {shown}: services.{}", printable(&service));
            let value = match (entry.release, entry.image, entry.images) {
                (Some(rel), None, None) => {
                    crate::cli::run::check_release(&rel)
                        .map_err(|e| BadInput(format!("{at}: {}", e.0)))?;
                    Wanted::Release(rel)
                }
                (None, Some(image), None) => Wanted::Images(
                    Images::parse(&[image]).map_err(|e| BadInput(format!("{at}: {e}")))?,
                ),
                (None, None, Some(images)) if !images.is_empty() => {
                    let values: Vec<String> =
                        images.iter().map(|(c, i)| format!("{c}={i}")).collect();
                    Wanted::Images(
                        Images::parse(&values).map_err(|e| BadInput(format!("{at}: {e}")))?,
                    )
                }
                _ => {
                    return Err(BadInput(format!(
                        "{at}: give exactly one of `release`, `image` or `images` (a non-empty \
                         map of container to image)"
                    )));
                }
            };
            add(&service, value, "--manifest")?;
        }
    }
    let members: Vec<&str> = release.services().map(|(_, s)| s).collect();
    for service in wanted.keys() {
        if !members.contains(&service.as_str()) {
            return Err(BadInput(format!(
                "`{}` is not a service of release `{name}` (its services: {})\n  fix: name one of \
                 them, or add the service to [releases.{name}] waves",
                printable(service),
                members.join(", ")
            )));
        }
    }
    if wanted.is_empty() {
        return Err(BadInput(format!(
            "release `{name}` was given nothing to deploy\n  fix: --image SERVICE=IMAGE, \
             --release SERVICE=RELEASE (repeat per service), or --manifest FILE"
        )));
    }
    Ok(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release() -> ReleaseConfig {
        ReleaseConfig {
            waves: vec![vec!["api".into(), "worker".into()], vec!["web".into()]],
            strategies: BTreeMap::new(),
            bake: std::time::Duration::ZERO,
            watch_interval: std::time::Duration::from_secs(30),
            gates: Vec::new(),
        }
    }

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn values_are_split_per_service_and_images_grouped() {
        let wanted = parse(
            "shop",
            &release(),
            &strings(&["web=web:42"]),
            &strings(&[
                "api=app=repo/api:7",
                "api=sidecar=repo/envoy:1",
                "worker=repo/w@sha256:ab",
            ]),
            None,
        )
        .unwrap();
        assert_eq!(wanted["web"], Wanted::Release("web:42".into()));
        assert_eq!(
            wanted["api"],
            Wanted::Images(Images::Named(vec![
                ("app".into(), "repo/api:7".into()),
                ("sidecar".into(), "repo/envoy:1".into())
            ]))
        );
        assert_eq!(
            wanted["worker"],
            Wanted::Images(Images::One("repo/w@sha256:ab".into()))
        );
    }

    #[test]
    fn a_value_outside_the_release_twice_given_or_without_a_service_is_refused() {
        for (releases, images, says) in [
            (vec!["db=db:1"], vec![], "not a service of release `shop`"),
            (
                vec!["api=api:1"],
                vec!["api=repo/api:2"],
                "given two releases",
            ),
            (vec!["api:42"], vec![], "SERVICE="),
            (vec!["=api:42"], vec![], "SERVICE="),
            (vec![], vec!["web="], "SERVICE="),
            (vec!["web=a\nb"], vec![], "one line"),
            (vec![], vec![], "nothing to deploy"),
        ] {
            let err = parse(
                "shop",
                &release(),
                &strings(&releases),
                &strings(&images),
                None,
            )
            .unwrap_err();
            assert!(err.0.contains(says), "{releases:?} {images:?}: {}", err.0);
        }
    }

    #[test]
    fn a_manifest_gives_one_value_per_service_and_is_read_strictly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        std::fs::write(
            &path,
            r#"{"services": {"api": {"image": "repo/api:7"}, "web": {"release": "web:3"},
                "worker": {"images": {"app": "repo/w:1"}}}}"#,
        )
        .unwrap();
        let wanted = parse("shop", &release(), &[], &[], Some(&path)).unwrap();
        assert_eq!(wanted.len(), 3);
        assert_eq!(wanted["web"], Wanted::Release("web:3".into()));
        for (body, says) in [
            (
                r#"{"services": {"api": {"image": "a", "release": "b"}}}"#,
                "exactly one",
            ),
            (r#"{"services": {"api": {"tag": "a"}}}"#, "unknown field"),
            (r#"{"services": {"api": {"images": {}}}}"#, "exactly one"),
            (r#"{"services": {"db": {"image": "a"}}}"#, "not a service"),
            (r#"[1, 2"#, "--manifest"),
        ] {
            std::fs::write(&path, body).unwrap();
            let err = parse("shop", &release(), &[], &[], Some(&path)).unwrap_err();
            assert!(err.0.contains(says), "{body}: {}", err.0);
        }
        let err = parse(
            "shop",
            &release(),
            &[],
            &[],
            Some(&dir.path().join("none.json")),
        )
        .unwrap_err();
        assert!(err.0.contains("cannot read"), "{}", err.0);
    }
}
