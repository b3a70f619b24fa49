//! CloudWatch metric queries on a plugin's behalf (the `metrics` capability): one
//! GetMetricData query, its datapoints oldest first. The plugin host has already checked
//! the namespace against the plugin's grant.

use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};

use super::Clients;

/// The most datapoints handed back for one query.
pub const MAX_DATAPOINTS: usize = 1440;

/// One metric statistic over a window.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricRequest {
    pub namespace: String,
    pub name: String,
    pub dimensions: Vec<(String, String)>,
    /// `Average`, `Sum`, `Maximum`, `Minimum` or `SampleCount`.
    pub statistic: String,
    pub period: Duration,
    /// How far back from now.
    pub window: Duration,
}

/// The datapoints of `request` as (milliseconds since the epoch, value), oldest first.
///
/// # Errors
/// A message for the plugin: the request is out of range, or CloudWatch failed.
pub async fn query(clients: &Clients, request: &MetricRequest) -> Result<Vec<(u64, f64)>, String> {
    if !["Average", "Sum", "Maximum", "Minimum", "SampleCount"]
        .contains(&request.statistic.as_str())
    {
        return Err(format!(
            "statistic `{}` is not one of Average, Sum, Maximum, Minimum, SampleCount",
            request.statistic
        ));
    }
    let period = i32::try_from(request.period.as_secs())
        .ok()
        .filter(|p| *p >= 1)
        .ok_or("period-seconds must be at least 1")?;
    if request.window.is_zero() || request.window > Duration::from_secs(15 * 86_400) {
        return Err("window-seconds must be from 1 to 1296000 (15 days)".into());
    }
    let now = SystemTime::now();
    let metric = Metric::builder()
        .namespace(&request.namespace)
        .metric_name(&request.name)
        .set_dimensions(Some(
            request
                .dimensions
                .iter()
                .map(|(k, v)| Dimension::builder().name(k).value(v).build())
                .collect(),
        ))
        .build();
    let query = MetricDataQuery::builder()
        .id("q")
        .metric_stat(
            MetricStat::builder()
                .metric(metric)
                .period(period)
                .stat(&request.statistic)
                .build(),
        )
        .return_data(true)
        .build();
    let out = clients
        .cloudwatch
        .get_metric_data()
        .metric_data_queries(query)
        .start_time(DateTime::from(now - request.window))
        .end_time(DateTime::from(
            now + request.period.max(Duration::from_secs(1)),
        ))
        .max_datapoints(MAX_DATAPOINTS as i32)
        .send()
        .await
        .map_err(|err| format!("CloudWatch: {}", crate::aws::sdk_error(&err)))?;
    let mut points: Vec<(u64, f64)> = out
        .metric_data_results()
        .iter()
        .flat_map(|r| r.timestamps().iter().zip(r.values()))
        .map(|(at, value)| {
            (
                u64::try_from(at.to_millis().unwrap_or(0)).unwrap_or(0),
                *value,
            )
        })
        .collect();
    points.sort_by_key(|(at, _)| *at);
    points.truncate(MAX_DATAPOINTS);
    Ok(points)
}
