//! The checks gates run against a release: HTTP smoke tests, CloudWatch alarms and
//! metric thresholds, the ALB gate, PromQL queries, each an engine [`Check`]. [`GateSpec`] is what
//! config resolves a gate to; [`build`] turns specs into the engine's gates with the
//! clients they need. Alarm names, dimension values and URLs may hold placeholders
//! ([`placeholders`]), resolved at each check from the run's [`GateContext`].

mod alb;
mod cloudwatch;
mod http;
pub mod placeholders;
mod prometheus;

use std::sync::Arc;

use deployer_contract::{GateResult, GateStatus, LifecyclePoint};
use deployer_engine::gates::{Check, CheckFuture, Gate, GateContext, GatePoint};

pub use alb::{AlbCheck, AlbGate, NoData};
pub use cloudwatch::{AlarmCheck, AlarmGate, Bound, MetricCheck, MetricGate, MetricStatistic};
pub use http::{HttpCheck, HttpGate};
use placeholders::{Placeholder, Resolver, Syntax, Template, Values};
pub use prometheus::{PrometheusCheck, PrometheusGate};

use crate::aws::Clients;
use crate::prometheus::Prometheus;

/// One kind of check, with everything it needs but clients.
#[derive(Clone, Debug, PartialEq)]
pub enum CheckSpec {
    Http(HttpCheck),
    Alarm(AlarmCheck),
    Metric(MetricCheck),
    Alb(AlbCheck),
    Prometheus(PrometheusCheck),
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

/// The engine's gates for `specs`, sharing one HTTP client, the AWS clients and the
/// configured Prometheus server.
///
/// # Errors
/// The HTTP client cannot be created (no TLS roots), or a Prometheus gate has no server
/// (config checking refuses that first).
pub fn build(
    specs: &[GateSpec],
    clients: &Clients,
    prometheus: Option<&Arc<Prometheus>>,
) -> Result<Vec<Gate>, String> {
    let http = reqwest::Client::builder()
        .build()
        .map_err(|e| format!("cannot create an HTTP client: {e}"))?;
    // One per run, shared: the load balancer is described once, not per check.
    let resolver = Arc::new(Resolver::new(clients.elb.clone()));
    specs
        .iter()
        .map(|spec| Ok(Gate {
            name: spec.name.clone(),
            at: spec.at.clone(),
            failures: spec.failures,
            check: match &spec.check {
                CheckSpec::Http(check) => Box::new(Resolved {
                    gate: HttpGate {
                        client: http.clone(),
                        check: check.clone(),
                    },
                    resolver: resolver.clone(),
                }) as Box<dyn Check>,
                CheckSpec::Alarm(check) => Box::new(Resolved {
                    gate: AlarmGate {
                        client: clients.cloudwatch.clone(),
                        check: check.clone(),
                    },
                    resolver: resolver.clone(),
                }),
                CheckSpec::Metric(check) => Box::new(Resolved {
                    gate: MetricGate {
                        client: clients.cloudwatch.clone(),
                        check: check.clone(),
                    },
                    resolver: resolver.clone(),
                }),
                CheckSpec::Alb(check) => Box::new(AlbGate {
                    client: clients.cloudwatch.clone(),
                    resolver: resolver.clone(),
                    check: check.clone(),
                }),
                CheckSpec::Prometheus(check) => Box::new(Resolved {
                    gate: PrometheusGate {
                        client: prometheus
                            .ok_or_else(|| {
                                format!(
                                    "gate `{}` queries Prometheus, but no [prometheus] server is configured",
                                    spec.name
                                )
                            })?
                            .clone(),
                        check: check.clone(),
                    },
                    resolver: resolver.clone(),
                }),
            },
        }))
        .collect()
}

/// A gate whose settings may hold placeholders, and what resolves them.
struct Resolved<G> {
    gate: G,
    resolver: Arc<Resolver>,
}

/// A gate's templated settings: which they are, and the gate with them resolved.
trait Templated: Clone + Send + Sync {
    /// How its settings write placeholders.
    const SYNTAX: Syntax = Syntax::Setting;
    /// The settings that may hold placeholders.
    fn templates(&self) -> Vec<&str>;
    /// A copy with each templated setting rendered from `values`.
    fn resolve(&self, values: &Values) -> Result<Self, placeholders::Unresolved>;
}

/// Each of `texts` rendered from `values`, values taken as they are.
fn render_all(texts: &[String], values: &Values) -> Result<Vec<String>, placeholders::Unresolved> {
    texts
        .iter()
        .map(|text| render(text, values, str::to_string))
        .collect()
}

fn render(
    text: &str,
    values: &Values,
    encode: impl Fn(&str) -> String,
) -> Result<String, placeholders::Unresolved> {
    render_as(Syntax::Setting, text, values, encode)
}

fn render_as(
    syntax: Syntax,
    text: &str,
    values: &Values,
    encode: impl Fn(&str) -> String,
) -> Result<String, placeholders::Unresolved> {
    // Config checking parsed every template: one that does not parse now is a bug, and
    // reported as such rather than used as written.
    Template::parse_as(syntax, text)
        .map_err(|message| placeholders::Unresolved {
            message,
            transient: false,
        })?
        .render(values, encode)
}

impl Templated for HttpGate {
    fn templates(&self) -> Vec<&str> {
        vec![&self.check.url]
    }
    fn resolve(&self, values: &Values) -> Result<Self, placeholders::Unresolved> {
        let mut gate = self.clone();
        gate.check.url = render(&self.check.url, values, placeholders::url_encode)?;
        Ok(gate)
    }
}

impl Templated for AlarmGate {
    fn templates(&self) -> Vec<&str> {
        self.check.alarms.iter().map(String::as_str).collect()
    }
    fn resolve(&self, values: &Values) -> Result<Self, placeholders::Unresolved> {
        let mut gate = self.clone();
        gate.check.alarms = render_all(&self.check.alarms, values)?;
        Ok(gate)
    }
}

impl Templated for MetricGate {
    fn templates(&self) -> Vec<&str> {
        self.check
            .dimensions
            .iter()
            .map(|(_, value)| value.as_str())
            .collect()
    }
    fn resolve(&self, values: &Values) -> Result<Self, placeholders::Unresolved> {
        let mut gate = self.clone();
        for (_, value) in &mut gate.check.dimensions {
            *value = render(value, values, str::to_string)?;
        }
        Ok(gate)
    }
}

impl Templated for PrometheusGate {
    const SYNTAX: Syntax = Syntax::PromQl;

    fn templates(&self) -> Vec<&str> {
        vec![&self.check.query]
    }
    fn resolve(&self, values: &Values) -> Result<Self, placeholders::Unresolved> {
        let mut gate = self.clone();
        gate.check.query = render_as(
            Syntax::PromQl,
            &self.check.query,
            values,
            placeholders::promql_escape,
        )?;
        Ok(gate)
    }
}

impl<G: Templated> Resolved<G> {
    /// The gate with this run's values, or the gate's result when one has none:
    /// inconclusive when asking again may help (throttled), else a failure.
    async fn gate(&self, name: &str, ctx: &GateContext) -> Result<G, GateResult> {
        let used: Vec<Placeholder> = self
            .gate
            .templates()
            .into_iter()
            .filter_map(|text| Template::parse_as(G::SYNTAX, text).ok())
            .flat_map(|t| t.placeholders().collect::<Vec<_>>())
            .collect();
        if used.is_empty() {
            return Ok(self.gate.clone());
        }
        let values = self
            .resolver
            .values(ctx, used.contains(&Placeholder::LoadBalancer))
            .await;
        self.gate.resolve(&values).map_err(|why| GateResult {
            name: name.to_string(),
            status: if why.transient {
                GateStatus::Inconclusive
            } else {
                GateStatus::Fail
            },
            detail: format!("cannot resolve the gate's placeholders: {}", why.message),
            observed: None,
        })
    }

    fn needs_sides(&self) -> bool {
        placeholders::any_need_sides(G::SYNTAX, self.gate.templates())
    }
}

/// The checks whose text may hold placeholders: resolved for the run's sides, then run.
macro_rules! resolved_check {
    ($($gate:ty),*) => {$(
        impl Check for Resolved<$gate> {
            fn check<'a>(
                &'a self,
                name: &'a str,
                _: LifecyclePoint,
                ctx: &'a GateContext,
            ) -> CheckFuture<'a> {
                Box::pin(async move {
                    match self.gate(name, ctx).await {
                        Ok(gate) => gate.run(name).await,
                        Err(result) => result,
                    }
                })
            }

            fn need_target_groups(&self) -> bool {
                self.needs_sides()
            }
        }
    )*};
}

resolved_check!(HttpGate, AlarmGate, MetricGate, PrometheusGate);

impl Check for AlbGate {
    fn check<'a>(
        &'a self,
        name: &'a str,
        _: LifecyclePoint,
        ctx: &'a GateContext,
    ) -> CheckFuture<'a> {
        Box::pin(self.run(name, ctx))
    }

    fn need_target_groups(&self) -> bool {
        true
    }
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
