//! CloudWatch gates: alarm states, and metric statistics against a threshold.

use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, StateValue, Statistic};

use deployer_contract::{GateResult, GateStatus};

/// CloudWatch alarms that must not be in ALARM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlarmCheck {
    pub alarms: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct AlarmGate {
    pub client: Client,
    pub check: AlarmCheck,
}

impl AlarmGate {
    /// Fails when any alarm is in ALARM (or missing: fail closed); no-data when one has
    /// insufficient data; passes when all are OK.
    pub async fn run(&self, name: &str) -> GateResult {
        let result = |status, detail: String| GateResult {
            name: name.to_string(),
            status,
            detail,
            observed: None,
        };
        let out = match self
            .client
            .describe_alarms()
            .set_alarm_names(Some(self.check.alarms.clone()))
            .send()
            .await
        {
            Ok(out) => out,
            Err(err) => {
                return result(
                    GateStatus::Inconclusive,
                    format!("cannot read alarms: {}", crate::aws::sdk_error(&err)),
                );
            }
        };
        let found = out.metric_alarms();
        let mut status = GateStatus::Pass;
        let mut notes = Vec::new();
        for wanted in &self.check.alarms {
            match found
                .iter()
                .find(|a| a.alarm_name() == Some(wanted.as_str()))
            {
                None => {
                    status = GateStatus::Fail;
                    notes.push(format!("{wanted}: no such alarm"));
                }
                Some(alarm) => match alarm.state_value() {
                    Some(StateValue::Alarm) => {
                        status = GateStatus::Fail;
                        notes.push(format!("{wanted}: ALARM"));
                    }
                    Some(StateValue::Ok) => notes.push(format!("{wanted}: OK")),
                    _ => {
                        if status == GateStatus::Pass {
                            status = GateStatus::NoData;
                        }
                        notes.push(format!("{wanted}: INSUFFICIENT_DATA"));
                    }
                },
            }
        }
        result(status, notes.join(", "))
    }
}

/// Which side of the threshold is bad.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bound {
    /// Fail when the value is above this.
    Max(f64),
    /// Fail when the value is below this.
    Min(f64),
}

impl Bound {
    /// Whether `value` is on the bad side, and the bound in words ("at most 5").
    pub fn judge(self, value: f64) -> (GateStatus, String) {
        let (bad, bound) = match self {
            Bound::Max(max) => (value > max, format!("at most {max}")),
            Bound::Min(min) => (value < min, format!("at least {min}")),
        };
        (
            if bad {
                GateStatus::Fail
            } else {
                GateStatus::Pass
            },
            bound,
        )
    }

    /// Whether `value` is worse than `than` by this bound (higher for a max).
    pub fn worse(self, value: f64, than: f64) -> bool {
        match self {
            Bound::Max(_) => value > than,
            Bound::Min(_) => value < than,
        }
    }
}

/// The CloudWatch statistics a metric gate can judge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricStatistic {
    Average,
    Sum,
    Maximum,
    Minimum,
    SampleCount,
}

impl MetricStatistic {
    /// Every statistic with its CloudWatch name.
    pub const ALL: [(MetricStatistic, &'static str); 5] = [
        (MetricStatistic::Average, "Average"),
        (MetricStatistic::Sum, "Sum"),
        (MetricStatistic::Maximum, "Maximum"),
        (MetricStatistic::Minimum, "Minimum"),
        (MetricStatistic::SampleCount, "SampleCount"),
    ];

    fn cloudwatch(self) -> Statistic {
        match self {
            MetricStatistic::Average => Statistic::Average,
            MetricStatistic::Sum => Statistic::Sum,
            MetricStatistic::Maximum => Statistic::Maximum,
            MetricStatistic::Minimum => Statistic::Minimum,
            MetricStatistic::SampleCount => Statistic::SampleCount,
        }
    }

    fn name(self) -> &'static str {
        MetricStatistic::ALL
            .iter()
            .find(|(s, _)| *s == self)
            .map_or("", |(_, name)| name)
    }
}

/// A CloudWatch metric statistic against a bound.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricCheck {
    pub namespace: String,
    pub metric: String,
    pub dimensions: Vec<(String, String)>,
    pub statistic: MetricStatistic,
    pub period: Duration,
    pub window: Duration,
    pub bound: Bound,
}

#[derive(Clone, Debug)]
pub struct MetricGate {
    pub client: Client,
    pub check: MetricCheck,
}

impl MetricGate {
    /// The statistic over the window (the worst datapoint) against the bound; no-data
    /// when CloudWatch has no datapoints in the window.
    pub async fn run(&self, name: &str) -> GateResult {
        let now = SystemTime::now();
        let start = now - self.check.window;
        // The end is exclusive (and truncated to the second): reach a period past now so
        // the current, still-filling period counts.
        let end = now + self.check.period.max(Duration::from_secs(1));
        let mut request = self
            .client
            .get_metric_statistics()
            .namespace(&self.check.namespace)
            .metric_name(&self.check.metric)
            .start_time(DateTime::from(start))
            .end_time(DateTime::from(end))
            .period(self.check.period.as_secs().max(1) as i32)
            .statistics(self.check.statistic.cloudwatch());
        for (key, value) in &self.check.dimensions {
            request = request.dimensions(Dimension::builder().name(key).value(value).build());
        }
        let result = |status, detail: String, observed| GateResult {
            name: name.to_string(),
            status,
            detail,
            observed,
        };
        let out = match request.send().await {
            Ok(out) => out,
            Err(err) => {
                return result(
                    GateStatus::Inconclusive,
                    format!(
                        "cannot read {}: {}",
                        self.check.metric,
                        crate::aws::sdk_error(&err)
                    ),
                    None,
                );
            }
        };
        let values: Vec<f64> = out
            .datapoints()
            .iter()
            .filter_map(|d| match self.check.statistic {
                MetricStatistic::Average => d.average(),
                MetricStatistic::Sum => d.sum(),
                MetricStatistic::Maximum => d.maximum(),
                MetricStatistic::Minimum => d.minimum(),
                MetricStatistic::SampleCount => d.sample_count(),
            })
            .collect();
        let worst = match self.check.bound {
            Bound::Max(_) => values.iter().copied().reduce(f64::max),
            Bound::Min(_) => values.iter().copied().reduce(f64::min),
        };
        let Some(worst) = worst else {
            return result(
                GateStatus::NoData,
                format!(
                    "no {} datapoints in the last {:?}",
                    self.check.metric, self.check.window
                ),
                None,
            );
        };
        let (status, bound) = self.check.bound.judge(worst);
        result(
            status,
            format!(
                "{} {} is {worst} (must be {bound})",
                self.check.metric,
                self.check.statistic.name()
            ),
            Some(worst),
        )
    }
}
