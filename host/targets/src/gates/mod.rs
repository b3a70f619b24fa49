//! The checks gates run against a release: HTTP smoke tests, CloudWatch alarms and
//! metric thresholds, each an engine [`Check`]. [`GateSpec`] is what config resolves a
//! gate to; [`build`] turns specs into the engine's gates with the clients they need.

mod cloudwatch;
mod http;

use deployer_contract::LifecyclePoint;
use deployer_engine::gates::{Check, CheckFuture, Gate, GateContext, GatePoint};

pub use cloudwatch::{AlarmCheck, AlarmGate, Bound, MetricCheck, MetricGate, MetricStatistic};
pub use http::{HttpCheck, HttpGate};

use crate::aws::Clients;

/// One kind of check, with everything it needs but clients.
#[derive(Clone, Debug, PartialEq)]
pub enum CheckSpec {
    Http(HttpCheck),
    Alarm(AlarmCheck),
    Metric(MetricCheck),
}

/// A gate as config resolves it.
#[derive(Clone, Debug, PartialEq)]
pub struct GateSpec {
    pub name: String,
    pub at: Vec<GatePoint>,
    /// Consecutive failures before the gate reports `fail`.
    pub failures: u32,
    pub check: CheckSpec,
}

/// The engine's gates for `specs`, sharing one HTTP client and the AWS clients.
///
/// # Errors
/// The HTTP client cannot be created (no TLS roots).
pub fn build(specs: &[GateSpec], clients: &Clients) -> Result<Vec<Gate>, reqwest::Error> {
    let http = reqwest::Client::builder().build()?;
    Ok(specs
        .iter()
        .map(|spec| Gate {
            name: spec.name.clone(),
            at: spec.at.clone(),
            failures: spec.failures,
            check: match &spec.check {
                CheckSpec::Http(check) => Box::new(HttpGate {
                    client: http.clone(),
                    check: check.clone(),
                }) as Box<dyn Check>,
                CheckSpec::Alarm(check) => Box::new(AlarmGate {
                    client: clients.cloudwatch.clone(),
                    check: check.clone(),
                }),
                CheckSpec::Metric(check) => Box::new(MetricGate {
                    client: clients.cloudwatch.clone(),
                    check: check.clone(),
                }),
            },
        })
        .collect())
}

impl Check for HttpGate {
    fn check<'a>(
        &'a self,
        name: &'a str,
        _: LifecyclePoint,
        _: &'a GateContext,
    ) -> CheckFuture<'a> {
        Box::pin(self.run(name))
    }
}

impl Check for AlarmGate {
    fn check<'a>(
        &'a self,
        name: &'a str,
        _: LifecyclePoint,
        _: &'a GateContext,
    ) -> CheckFuture<'a> {
        Box::pin(self.run(name))
    }
}

impl Check for MetricGate {
    fn check<'a>(
        &'a self,
        name: &'a str,
        _: LifecyclePoint,
        _: &'a GateContext,
    ) -> CheckFuture<'a> {
        Box::pin(self.run(name))
    }
}
