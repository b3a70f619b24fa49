//! The `metrics` capability of hooks, answered for one run: CloudWatch with the run's
//! AWS clients, PromQL on the `[prometheus]` server. The plugin host has already held
//! each query to the plugin's grant; this only carries it out and converts the answer.

use std::sync::Arc;
use std::time::Duration;

use deployer_plugin_host::bindings::metrics;
use deployer_plugin_host::bindings::types::CapabilityError;
use deployer_plugin_host::capabilities::{BoxFuture, MetricsSource};
use deployer_targets::aws::Clients;
use deployer_targets::prometheus::{Prometheus, QueryError, Range};

/// The `metrics` capability: CloudWatch GetMetricData with this run's clients, PromQL
/// on the configured Prometheus (the plugin host has checked the query against the
/// plugin's grant).
pub struct RunMetrics {
    clients: Clients,
    prometheus: Option<Arc<Prometheus>>,
}

impl RunMetrics {
    pub fn new(clients: Clients, prometheus: Option<Arc<Prometheus>>) -> Self {
        RunMetrics {
            clients,
            prometheus,
        }
    }
}

impl MetricsSource for RunMetrics {
    fn prometheus(
        &self,
        query: metrics::PromqlQuery,
    ) -> BoxFuture<'_, Result<Vec<metrics::Series>, CapabilityError>> {
        Box::pin(async move {
            let Some(prometheus) = &self.prometheus else {
                return Err(CapabilityError::Unavailable(
                    "no Prometheus server is configured: add a [prometheus] table with its url \
                     to deployer.toml"
                        .into(),
                ));
            };
            let range = (query.window_seconds > 0).then(|| Range {
                window: Duration::from_secs(u64::from(query.window_seconds)),
                step: Duration::from_secs(u64::from(query.step_seconds.max(1))),
            });
            match prometheus.query(&query.query, range).await {
                Ok(series) => Ok(series
                    .into_iter()
                    .map(|s| metrics::Series {
                        labels: s.labels.into_iter().collect(),
                        points: s
                            .points
                            .into_iter()
                            .map(|(timestamp_ms, value)| metrics::Datapoint {
                                timestamp_ms,
                                value,
                            })
                            .collect(),
                    })
                    .collect()),
                Err(QueryError::Refused(why)) => Err(CapabilityError::Invalid(why)),
                Err(QueryError::TooLarge(why)) => Err(CapabilityError::Limit(why)),
                Err(QueryError::Unavailable(why)) => Err(CapabilityError::Unavailable(why)),
            }
        })
    }

    fn query(
        &self,
        query: metrics::MetricQuery,
    ) -> BoxFuture<'_, Result<Vec<metrics::Datapoint>, CapabilityError>> {
        Box::pin(async move {
            let request = deployer_targets::aws::metrics::MetricRequest {
                namespace: query.namespace,
                name: query.name,
                dimensions: query.dimensions,
                statistic: query.statistic,
                period: Duration::from_secs(u64::from(query.period_seconds)),
                window: Duration::from_secs(u64::from(query.window_seconds)),
            };
            deployer_targets::aws::metrics::query(&self.clients, &request)
                .await
                .map(|points| {
                    points
                        .into_iter()
                        .map(|(timestamp_ms, value)| metrics::Datapoint {
                            timestamp_ms,
                            value,
                        })
                        .collect()
                })
                .map_err(CapabilityError::Unavailable)
        })
    }
}
