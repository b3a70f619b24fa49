//! The built-in canary judge of deployer: a hook that compares the canary (the new
//! release) with the baseline (the stable release) metric by metric, Kayenta-style, and
//! fails the gate when the canary is significantly and materially worse.
//!
//! For each metric in its parameters it runs the metric's query twice — `{release}` the
//! canary's release, then the baseline's — through the `metrics` capability (PromQL via
//! `query-prometheus`, or CloudWatch via `query`), takes every finite point as a sample,
//! and compares the two samples with a Mann–Whitney U test and their means against the
//! metric's tolerance. `plugins/judge/README.md` explains the statistics and every
//! parameter, with a full `deployer.toml`.
//!
//! Modules: [`params`] (parameters and their checks), [`query`] (a side's query and its
//! samples), [`stats`] (the test, pure), [`judge`] (metrics to one gate result),
//! [`report`] (the gate's detail in words).

pub mod judge;
pub mod params;
pub mod query;
pub mod report;
pub mod stats;

use deployer_plugin_sdk::hook::{HookContext, metrics};
use deployer_plugin_sdk::{CapabilityError, GateResult, Hook, ParamError, PluginInfo};

use crate::query::Query;

pub struct Judge;

impl Hook for Judge {
    type Params = params::Params;

    fn info() -> PluginInfo {
        PluginInfo {
            name: judge::NAME.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Compares the canary's metrics with the baseline's (Mann-Whitney U)"
                .into(),
        }
    }

    fn check(params: &params::Params) -> Vec<ParamError> {
        params::check(params)
    }

    fn run(params: &params::Params, ctx: &HookContext) -> GateResult {
        judge::evaluate(params, ctx, &mut fetch)
    }
}

/// A query through the `metrics` capability, as samples.
fn fetch(query: &Query) -> Result<Vec<f64>, CapabilityError> {
    match query {
        Query::Prometheus(q) => {
            metrics::query_prometheus(q).map(|series| query::samples_of_series(&series))
        }
        Query::CloudWatch(q) => metrics::query(q).map(|points| query::samples_of_points(&points)),
    }
}

deployer_plugin_sdk::export_hook!(Judge);
