//! `[releases.NAME]`: several services deployed as one release, in waves, rolled back
//! together. Resolved here like a service: every problem is reported at its field, and
//! a release that resolves can be run without another check of its shape.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use deployer_engine::gates::GatePoint;
use deployer_engine::redact::printable;
use deployer_engine::rollout::MIN_WATCH_INTERVAL;
use deployer_engine::state::names;
use deployer_targets::gates::CheckSpec;
use toml::Spanned;

use super::ReleaseConfig;
use super::ServiceConfig;
use super::check::Floor;
use super::resolve::{Problems, gate_spec, strategy_source};
use super::schema::{RawConfig, Release};

/// How often a release's gates are checked during a bake, unless `watch-interval` says.
const WATCH_INTERVAL: Duration = Duration::from_secs(30);

/// The most services one release may hold: far above the 50 the benchmark runs, and
/// low enough that a typo of a generated config cannot ask for a million locks.
pub const MAX_SERVICES: usize = 500;

/// The release `name` of `raw`, whose services resolved to `services`.
pub(super) fn release_config(
    name: &str,
    release: &Spanned<Release>,
    raw: &RawConfig,
    services: &BTreeMap<String, ServiceConfig>,
    problems: &mut Problems<'_>,
) -> Option<ReleaseConfig> {
    let prefix = format!("releases.{name}");
    if !names::valid_service(name) {
        problems.at(
            &prefix,
            format!(
                "is not a valid release name: {}; it names the release's state directory \
                 and appears in logs\n  fix: rename the table, e.g. [releases.shop]",
                names::NAME_RULE
            ),
        );
        return None;
    }
    let before = problems.found.len();
    let release = release.get_ref();
    let mut seen = BTreeSet::new();
    if release.waves.is_empty() || release.waves.iter().all(Vec::is_empty) {
        problems.at(
            &format!("{prefix}.waves"),
            "names no service\n  fix: list the services wave by wave, e.g. \
             waves = [[\"api\", \"worker\"], [\"web\"]]",
        );
    }
    for (wave, names) in release.waves.iter().enumerate() {
        let field = format!("{prefix}.waves[{wave}]");
        if names.is_empty() {
            problems.at(
                &field,
                "is an empty wave\n  fix: remove it, or name the services it deploys",
            );
        }
        for service in names {
            if !services.contains_key(service) && !raw.services.contains_key(service) {
                problems.at(
                    &field,
                    format!(
                        "names `{}`, which is not a service of this file\n  fix: use one of: {}",
                        printable(service),
                        raw.services.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                );
            } else if !seen.insert(service.clone()) {
                problems.at(
                    &field,
                    format!(
                        "names `{service}` a second time: a service goes out once per release\n  \
                         fix: keep it in one wave"
                    ),
                );
            }
        }
    }
    if seen.len() > MAX_SERVICES {
        problems.at(
            &format!("{prefix}.waves"),
            format!(
                "names {} services; a release holds at most {MAX_SERVICES}\n  fix: split it \
                 into several releases",
                seen.len()
            ),
        );
    }
    for service in release.strategies.keys() {
        if !seen.contains(service) {
            problems.at(
                &format!("{prefix}.strategies.{service}"),
                format!(
                    "`{}` is not in this release's waves\n  fix: remove it, or add the \
                     service to a wave",
                    printable(service)
                ),
            );
        }
    }
    if let Some(strategy) = &release.strategy
        && let Err(message) = strategy_source(strategy, raw, &problems.source.path)
    {
        problems.at(&format!("{prefix}.strategy"), message);
    }
    let mut strategies = BTreeMap::new();
    for service in &seen {
        let (field, strategy) = match release.strategies.get(service) {
            Some(strategy) => (format!("{prefix}.strategies.{service}"), strategy),
            None => match &release.strategy {
                Some(strategy) => (format!("{prefix}.strategy"), strategy),
                None => {
                    problems.at(
                        &prefix,
                        format!(
                            "gives service `{service}` no strategy\n  fix: set `strategy = \
                             \"canary\"` for every service of the release, or \
                             `strategies = {{ {service} = \"…\" }}`"
                        ),
                    );
                    continue;
                }
            },
        };
        // The shared `strategy` is checked once, above.
        if release.strategies.contains_key(service)
            && let Err(message) = strategy_source(strategy, raw, &problems.source.path)
        {
            problems.at(&field, message);
            continue;
        }
        if strategy == "rolling"
            && services
                .get(service)
                .is_some_and(|s| s.spec.target.is_lambda())
        {
            problems.at(
                &field,
                format!(
                    "gives `rolling` to `{service}`, a Lambda function: {}\n  fix: `strategies = \
                     {{ {service} = \"canary\" }}` (or blue-green)",
                    super::check::LAMBDA_NOT_ROLLING
                ),
            );
            continue;
        }
        strategies.insert(service.clone(), strategy.clone());
    }
    let bake = problems.duration(
        &format!("{prefix}.bake"),
        release.bake.as_deref(),
        Duration::ZERO,
    );
    if bake > Duration::from_secs(24 * 3600) {
        problems.at(
            &format!("{prefix}.bake"),
            "at most a day (\"24h\"): the release holds every service's lock all that time",
        );
    }
    let watch_interval = problems.duration_from(
        &format!("{prefix}.watch-interval"),
        release.watch_interval.as_deref(),
        WATCH_INTERVAL,
        Floor {
            min: MIN_WATCH_INTERVAL,
            why: "release gates are checked at most once a second (each check calls CloudWatch and the gates' endpoints)",
            default: Some(WATCH_INTERVAL),
        },
    );
    let mut gates = Vec::new();
    for (i, gate) in release.gates.iter().enumerate() {
        let field = format!("{prefix}.gates[{i}]");
        let Some(spec) = gate_spec(
            &field,
            gate.get_ref(),
            (name, false, raw.prometheus.is_some()),
            problems,
        ) else {
            continue;
        };
        if matches!(spec.check, CheckSpec::Alb(_)) {
            problems.at(
                &field,
                "an `alb` gate watches one service's new side; a release has none of its own\n  \
                 fix: put it under the service's gates",
            );
        } else if spec.at.iter().any(|point| *point != GatePoint::Bake) {
            problems.at(
                &format!("{field}.at"),
                "a release's gates run during the bakes between its waves only\n  fix: \
                 at = [\"bake\"] (a service's own gates run at its lifecycle points)",
            );
        } else {
            gates.push(spec);
        }
    }
    if !gates.is_empty() && bake.is_zero() {
        problems.at(
            &format!("{prefix}.bake"),
            "is zero, so the release's gates would never run\n  fix: set how long to watch \
             between waves, e.g. bake = \"5m\"",
        );
    }
    if problems.found.len() > before {
        return None;
    }
    Some(ReleaseConfig {
        waves: release
            .waves
            .iter()
            .filter(|wave| !wave.is_empty())
            .cloned()
            .collect(),
        strategies,
        bake,
        watch_interval,
        gates,
    })
}
