//! Weighted routing on an ALB listener's default action or on a listener rule.
//!
//! Weights are written as percentages (0-100, inside the ALB's 0-999) to exactly two
//! target groups and always read back: the share the load balancer reports is the one
//! the engine records, and a mismatch fails the step.

use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::Client;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, TargetGroupTuple, TargetHealthStateEnum,
};

use super::classify;
use deployer_engine::driver::DriverError;

/// Where production traffic is routed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Listener(String),
    Rule(String),
}

#[derive(Clone, Debug)]
pub struct AlbRouter {
    pub elb: Client,
    pub production: Route,
    pub test_listener: Option<String>,
}

/// The ALB allows at most this many target groups in one forward action.
pub const MAX_TARGET_GROUPS: usize = 5;
/// The ALB's largest weight.
pub const MAX_WEIGHT: i32 = 999;

impl AlbRouter {
    /// The forward weights of the production route, by target group.
    ///
    /// # Errors
    /// AWS errors; a route that does not forward.
    pub async fn weights(&self) -> Result<Vec<(String, i32)>, DriverError> {
        let actions = match &self.production {
            Route::Listener(arn) => {
                let out = self
                    .elb
                    .describe_listeners()
                    .listener_arns(arn)
                    .send()
                    .await
                    .map_err(|e| classify("reading the listener", e))?;
                let listener = out
                    .listeners()
                    .first()
                    .ok_or_else(|| DriverError::Failed(format!("listener {arn} does not exist")))?;
                listener.default_actions().to_vec()
            }
            Route::Rule(arn) => {
                let out = self
                    .elb
                    .describe_rules()
                    .rule_arns(arn)
                    .send()
                    .await
                    .map_err(|e| classify("reading the listener rule", e))?;
                let rule = out.rules().first().ok_or_else(|| {
                    DriverError::Failed(format!("listener rule {arn} does not exist"))
                })?;
                rule.actions().to_vec()
            }
        };
        forward_weights(&actions)
    }

    /// Route `new_percent` to `new_tg` and the rest to `stable_tg`, then read back and
    /// return the share of `new_tg`. Reads are retried briefly because the ALB API is
    /// eventually consistent.
    ///
    /// # Errors
    /// AWS errors; a percentage over 100.
    pub async fn shift(
        &self,
        stable_tg: &str,
        new_tg: &str,
        new_percent: u8,
    ) -> Result<u8, DriverError> {
        if new_percent > 100 {
            return Err(DriverError::Failed(format!(
                "{new_percent}% is not a traffic share"
            )));
        }
        let action = forward(&[
            (stable_tg, i32::from(100 - new_percent)),
            (new_tg, i32::from(new_percent)),
        ]);
        match &self.production {
            Route::Listener(arn) => {
                self.elb
                    .modify_listener()
                    .listener_arn(arn)
                    .default_actions(action)
                    .send()
                    .await
                    .map_err(|e| classify("setting listener weights", e))?;
            }
            Route::Rule(arn) => {
                self.elb
                    .modify_rule()
                    .rule_arn(arn)
                    .actions(action)
                    .send()
                    .await
                    .map_err(|e| classify("setting rule weights", e))?;
            }
        }
        let mut read = 0;
        for attempt in 0..5 {
            read = share_of(&self.weights().await?, new_tg);
            if read == new_percent {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200 * (attempt + 1))).await;
        }
        Ok(read)
    }

    /// Point the test listener entirely at `new_tg`.
    ///
    /// # Errors
    /// AWS errors; no test listener configured.
    pub async fn route_test(&self, new_tg: &str) -> Result<(), DriverError> {
        let arn = self
            .test_listener
            .as_ref()
            .ok_or_else(|| DriverError::Failed("no test listener is configured".into()))?;
        self.elb
            .modify_listener()
            .listener_arn(arn)
            .default_actions(forward(&[(new_tg, 1)]))
            .send()
            .await
            .map_err(|e| classify("routing the test listener", e))?;
        Ok(())
    }
}

/// Ids of the targets `tg` reports healthy.
///
/// # Errors
/// AWS errors.
pub async fn healthy_targets(elb: &Client, tg: &str) -> Result<Vec<String>, DriverError> {
    let out = elb
        .describe_target_health()
        .target_group_arn(tg)
        .send()
        .await
        .map_err(|e| classify("reading target health", e))?;
    Ok(out
        .target_health_descriptions()
        .iter()
        .filter(|d| {
            d.target_health().and_then(|h| h.state()) == Some(&TargetHealthStateEnum::Healthy)
        })
        .filter_map(|d| d.target().and_then(|t| t.id()).map(str::to_string))
        .collect())
}

fn forward(groups: &[(&str, i32)]) -> Action {
    let mut config = ForwardActionConfig::builder();
    for (arn, weight) in groups {
        config = config.target_groups(
            TargetGroupTuple::builder()
                .target_group_arn(*arn)
                .weight(*weight)
                .build(),
        );
    }
    Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .forward_config(config.build())
        .build()
}

/// Weights of the forward action among `actions` (a plain forward to one group counts
/// as weight 1 on it).
fn forward_weights(actions: &[Action]) -> Result<Vec<(String, i32)>, DriverError> {
    let forward = actions
        .iter()
        .find(|a| a.r#type() == Some(&ActionTypeEnum::Forward))
        .ok_or_else(|| DriverError::Failed("the route does not forward to target groups".into()))?;
    if let Some(config) = forward.forward_config()
        && !config.target_groups().is_empty()
    {
        let groups: Vec<(String, i32)> = config
            .target_groups()
            .iter()
            .map(|g| {
                (
                    g.target_group_arn().unwrap_or_default().to_string(),
                    g.weight().unwrap_or(1),
                )
            })
            .collect();
        if groups.len() > MAX_TARGET_GROUPS
            || groups.iter().any(|(_, w)| !(0..=MAX_WEIGHT).contains(w))
        {
            return Err(DriverError::Failed(
                "the route's weights are outside what an ALB allows".into(),
            ));
        }
        return Ok(groups);
    }
    match forward.target_group_arn() {
        Some(arn) => Ok(vec![(arn.to_string(), 1)]),
        None => Err(DriverError::Failed(
            "the forward action names no target group".into(),
        )),
    }
}

/// The percentage of traffic `tg` gets from `weights` (rounded to the nearest point).
pub fn share_of(weights: &[(String, i32)], tg: &str) -> u8 {
    let total: i32 = weights.iter().map(|(_, w)| *w).sum();
    if total <= 0 {
        return 0;
    }
    let mine: i32 = weights
        .iter()
        .filter(|(arn, _)| arn == tg)
        .map(|(_, w)| *w)
        .sum();
    ((mine * 100 + total / 2) / total) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_round_to_whole_percent() {
        let w = vec![("a".to_string(), 90), ("b".to_string(), 10)];
        assert_eq!(share_of(&w, "b"), 10);
        assert_eq!(share_of(&w, "c"), 0);
        let w = vec![("a".to_string(), 2), ("b".to_string(), 1)];
        assert_eq!(share_of(&w, "b"), 33);
        assert_eq!(share_of(&[], "b"), 0);
    }
}
