//! Weighted routing on an ALB listener's default action or on a listener rule.
//!
//! Weights are written as percentages (0-100, inside the ALB's 0-999) to exactly two
//! target groups and always read back: the share the load balancer reports is the one
//! the engine records, and a mismatch fails the step. The write's own answer is the
//! first read-back: ModifyListener and ModifyRule answer with the route as the load
//! balancer now has it, so a traffic step is three calls (the side's read, the route's
//! actions, the write); the route is read again only when that answer does not show the
//! share asked for.
//!
//! A traffic change rewrites only the target groups of the route's forward action: the
//! route's actions are read and written back in their order with every other action
//! (user authentication before the forward, say) and every other forward setting
//! (target-group stickiness) as they were. Writing a bare forward instead would log
//! nobody in and end stickiness at the first shift.

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
        forward_weights(&self.actions(&self.production).await?)
    }

    /// The actions of `route`: a listener's default actions or a rule's actions.
    async fn actions(&self, route: &Route) -> Result<Vec<Action>, DriverError> {
        match route {
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
                Ok(listener.default_actions().to_vec())
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
                Ok(rule.actions().to_vec())
            }
        }
    }

    /// Forward `route` to `groups` (ARN, weight), every other action and forward setting
    /// of it unchanged. `what` names the change in errors. Returns the route's actions
    /// as the load balancer's answer to the write reports them (empty when the answer
    /// names no listener or rule).
    async fn retarget(
        &self,
        route: &Route,
        groups: &[(&str, i32)],
        what: &str,
    ) -> Result<Vec<Action>, DriverError> {
        let actions = retargeted(&self.actions(route).await?, groups)?;
        let answered = match route {
            Route::Listener(arn) => self
                .elb
                .modify_listener()
                .listener_arn(arn)
                .set_default_actions(Some(actions))
                .send()
                .await
                .map_err(|e| classify(what, e))?
                .listeners()
                .first()
                .map(|l| l.default_actions().to_vec()),
            Route::Rule(arn) => self
                .elb
                .modify_rule()
                .rule_arn(arn)
                .set_actions(Some(actions))
                .send()
                .await
                .map_err(|e| classify(what, e))?
                .rules()
                .first()
                .map(|r| r.actions().to_vec()),
        };
        Ok(answered.unwrap_or_default())
    }

    /// Route `new_percent` to `new_tg` and the rest to `stable_tg`, then read back and
    /// return the share of `new_tg`. Only the forward's target groups change. The write's
    /// answer is the first read-back; when it does not show `new_percent` (or shows no
    /// route), the route is read, retried briefly because the ALB API's reads are
    /// eventually consistent.
    ///
    /// # Errors
    /// AWS errors; a percentage over 100; a route that does not forward.
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
        let groups = [
            (stable_tg, i32::from(100 - new_percent)),
            (new_tg, i32::from(new_percent)),
        ];
        let what = match &self.production {
            Route::Listener(_) => "setting listener weights",
            Route::Rule(_) => "setting rule weights",
        };
        let answered = self.retarget(&self.production, &groups, what).await?;
        if confirms(&answered, new_tg, new_percent) {
            return Ok(new_percent);
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

    /// Point the test listener's forward entirely at `new_tg`; its other actions and
    /// forward settings stay.
    ///
    /// # Errors
    /// AWS errors; no test listener configured; a test listener that does not forward.
    pub async fn route_test(&self, new_tg: &str) -> Result<(), DriverError> {
        let arn = self
            .test_listener
            .as_ref()
            .ok_or_else(|| DriverError::Failed("no test listener is configured".into()))?;
        self.retarget(
            &Route::Listener(arn.clone()),
            &[(new_tg, 1)],
            "routing the test listener",
        )
        .await
        .map(drop)
    }

    /// After a rollback: a test listener still forwarding to the rolled-back side's
    /// group `new_tg` is pointed at `stable_tg` again, as it was before the deployment.
    /// Left alone, it would send testers to a group that is about to empty (errors), and
    /// then straight to whatever the next deployment starts in that group before any of
    /// that deployment's gates ran. A test listener that does not forward to `new_tg`
    /// (none configured, or pointed elsewhere by hand) is left as it is.
    ///
    /// # Errors
    /// AWS errors; a test listener that does not forward.
    pub async fn restore_test(&self, stable_tg: &str, new_tg: &str) -> Result<(), DriverError> {
        let Some(arn) = &self.test_listener else {
            return Ok(());
        };
        let route = Route::Listener(arn.clone());
        let forwards = forward_weights(&self.actions(&route).await?)?;
        if !forwards.iter().any(|(tg, _)| tg == new_tg) {
            return Ok(());
        }
        self.retarget(
            &route,
            &[(stable_tg, 1)],
            "pointing the test listener back at the stable side",
        )
        .await
        .map(drop)
    }

    /// The share of the production route's weight on `tg`, read from the load balancer.
    ///
    /// # Errors
    /// AWS errors; a route that does not forward.
    pub async fn share(&self, tg: &str) -> Result<u8, DriverError> {
        Ok(share_of(&self.weights().await?, tg))
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

/// `actions` as read from a route, ready to be written back with the forward action sent
/// to `groups` (ARN, weight) and nothing else changed: the same actions in the same
/// order with the same `Order`s, the forward's other settings (stickiness) kept. Groups
/// the forward already names keep their place in its list; it drops groups not in
/// `groups`.
///
/// Two things of a read-back action cannot be written as read. A forward to one group
/// is reported with both `TargetGroupArn` and `ForwardConfig`, and AWS refuses a write
/// where they name different groups: only `ForwardConfig` is written. AWS never reports
/// an OIDC action's client secret: an action read without one keeps the secret it has
/// with `UseExistingClientSecret` (AWS refuses that flag beside a secret).
///
/// # Errors
/// A route with no forward action.
fn retargeted(actions: &[Action], groups: &[(&str, i32)]) -> Result<Vec<Action>, DriverError> {
    let forward = actions
        .iter()
        .position(|a| a.r#type() == Some(&ActionTypeEnum::Forward))
        .ok_or_else(|| DriverError::Failed("the route does not forward to target groups".into()))?;
    let mut actions = actions.to_vec();
    for action in &mut actions {
        if let Some(oidc) = action.authenticate_oidc_config.as_mut() {
            oidc.use_existing_client_secret = oidc.client_secret.is_none().then_some(true);
        }
    }
    let action = &mut actions[forward];
    let mut config = action
        .forward_config
        .take()
        .unwrap_or_else(|| ForwardActionConfig::builder().build());
    let mut listed: Vec<&str> = config
        .target_groups()
        .iter()
        .filter_map(|g| g.target_group_arn())
        .collect();
    if listed.is_empty() {
        listed.extend(action.target_group_arn());
    }
    let weight = |arn: &str| groups.iter().find(|(g, _)| *g == arn).map(|(_, w)| *w);
    let mut order: Vec<&str> = listed
        .into_iter()
        .filter(|arn| weight(arn).is_some())
        .collect();
    for (arn, _) in groups {
        if !order.contains(arn) {
            order.push(*arn);
        }
    }
    let tuples = order
        .iter()
        .map(|arn| {
            TargetGroupTuple::builder()
                .target_group_arn(*arn)
                .set_weight(weight(arn))
                .build()
        })
        .collect();
    config.target_groups = Some(tuples);
    action.forward_config = Some(config);
    action.target_group_arn = None;
    Ok(actions)
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

/// Whether `answered`, the route's actions in the load balancer's answer to a write,
/// gives `tg` exactly `percent` of the traffic. An answer without a forward (none at
/// all, or one the SDK could not read) confirms nothing: the route is read instead.
fn confirms(answered: &[Action], tg: &str, percent: u8) -> bool {
    forward_weights(answered).is_ok_and(|weights| share_of(&weights, tg) == percent)
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
    use aws_sdk_elasticloadbalancingv2::types::{
        AuthenticateCognitoActionConfig, AuthenticateOidcActionConfig, FixedResponseActionConfig,
        RedirectActionConfig, RedirectActionStatusCodeEnum, TargetGroupStickinessConfig,
    };

    const BLUE: &str = "arn:tg/blue";
    const GREEN: &str = "arn:tg/green";

    /// An OIDC login as AWS reports it: no client secret.
    fn oidc(order: i32) -> Action {
        Action::builder()
            .r#type(ActionTypeEnum::AuthenticateOidc)
            .order(order)
            .authenticate_oidc_config(
                AuthenticateOidcActionConfig::builder()
                    .issuer("https://idp.example.com")
                    .authorization_endpoint("https://idp.example.com/authorize")
                    .token_endpoint("https://idp.example.com/token")
                    .user_info_endpoint("https://idp.example.com/userinfo")
                    .client_id("web")
                    .session_timeout(3600)
                    .authentication_request_extra_params("prompt", "login")
                    .build(),
            )
            .build()
    }

    fn cognito(order: i32) -> Action {
        Action::builder()
            .r#type(ActionTypeEnum::AuthenticateCognito)
            .order(order)
            .authenticate_cognito_config(
                AuthenticateCognitoActionConfig::builder()
                    .user_pool_arn("arn:aws:cognito-idp:us-east-1:1:userpool/p")
                    .user_pool_client_id("c")
                    .user_pool_domain("d")
                    .build(),
            )
            .build()
    }

    fn fixed_response(order: i32) -> Action {
        Action::builder()
            .r#type(ActionTypeEnum::FixedResponse)
            .order(order)
            .fixed_response_config(
                FixedResponseActionConfig::builder()
                    .status_code("503")
                    .content_type("text/plain")
                    .message_body("down for maintenance")
                    .build(),
            )
            .build()
    }

    fn redirect() -> Action {
        Action::builder()
            .r#type(ActionTypeEnum::Redirect)
            .redirect_config(
                RedirectActionConfig::builder()
                    .protocol("HTTPS")
                    .port("443")
                    .status_code(RedirectActionStatusCodeEnum::Http301)
                    .build(),
            )
            .build()
    }

    /// A forward to `groups`, with stickiness for `sticky` seconds if given.
    fn forward_to(groups: &[(&str, i32)], sticky: Option<i32>, order: Option<i32>) -> Action {
        let mut config = ForwardActionConfig::builder();
        for (arn, weight) in groups {
            config = config.target_groups(
                TargetGroupTuple::builder()
                    .target_group_arn(*arn)
                    .weight(*weight)
                    .build(),
            );
        }
        if let Some(seconds) = sticky {
            config = config.target_group_stickiness_config(
                TargetGroupStickinessConfig::builder()
                    .enabled(true)
                    .duration_seconds(seconds)
                    .build(),
            );
        }
        Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .set_order(order)
            .forward_config(config.build())
            .build()
    }

    /// (ARN, weight) of the forward among `actions`, in its order.
    fn groups_of(actions: &[Action]) -> Vec<(String, i32)> {
        let forward = actions
            .iter()
            .find(|a| a.r#type() == Some(&ActionTypeEnum::Forward))
            .unwrap();
        forward
            .forward_config()
            .unwrap()
            .target_groups()
            .iter()
            .map(|g| {
                (
                    g.target_group_arn().unwrap().to_string(),
                    g.weight().unwrap(),
                )
            })
            .collect()
    }

    /// `retargeted` left every action but the forward's target groups as it was (an OIDC
    /// action read without its secret says to keep the secret it has), and wrote only
    /// `ForwardConfig` for the forward.
    fn assert_only_groups_changed(case: &str, before: &[Action], after: &[Action]) {
        assert_eq!(before.len(), after.len(), "{case}: actions added or lost");
        for (b, a) in before.iter().zip(after) {
            let mut expected = b.clone();
            if let Some(oidc) = expected.authenticate_oidc_config.as_mut() {
                oidc.use_existing_client_secret = oidc.client_secret.is_none().then_some(true);
            }
            if expected.r#type() == Some(&ActionTypeEnum::Forward) {
                assert_eq!(a.target_group_arn(), None, "{case}: TargetGroupArn written");
                expected.target_group_arn = None;
                let config = expected
                    .forward_config
                    .get_or_insert_with(|| ForwardActionConfig::builder().build());
                config.target_groups = a.forward_config().unwrap().target_groups.clone();
            }
            assert_eq!(a, &expected, "{case}");
        }
    }

    #[test]
    fn a_traffic_change_rewrites_only_the_forwards_target_groups() {
        let shift = [(BLUE, 90), (GREEN, 10)];
        /// A case, the actions as read, and the forward's groups once shifted.
        type Case = (&'static str, Vec<Action>, Vec<(&'static str, i32)>);
        let corpus: Vec<Case> = vec![
            (
                "login, then a sticky forward to two groups",
                vec![
                    oidc(1),
                    forward_to(&[(BLUE, 100), (GREEN, 0)], Some(600), Some(2)),
                ],
                vec![(BLUE, 90), (GREEN, 10)],
            ),
            (
                "Cognito login, then a forward reported with TargetGroupArn and ForwardConfig",
                vec![cognito(1), {
                    let mut f = forward_to(&[(BLUE, 1)], Some(60), Some(2));
                    f.target_group_arn = Some(BLUE.into());
                    f
                }],
                vec![(BLUE, 90), (GREEN, 10)],
            ),
            (
                "a forward with TargetGroupArn only",
                vec![
                    Action::builder()
                        .r#type(ActionTypeEnum::Forward)
                        .target_group_arn(BLUE)
                        .build(),
                ],
                vec![(BLUE, 90), (GREEN, 10)],
            ),
            (
                "a forward that lists green first",
                vec![forward_to(&[(GREEN, 0), (BLUE, 100)], Some(30), None)],
                vec![(GREEN, 10), (BLUE, 90)],
            ),
            (
                "a forward with a third group, which is dropped",
                vec![forward_to(
                    &[(BLUE, 50), ("arn:tg/other", 50), (GREEN, 0)],
                    None,
                    None,
                )],
                vec![(BLUE, 90), (GREEN, 10)],
            ),
            (
                "a fixed response and a forward, each with an order",
                vec![
                    fixed_response(5),
                    forward_to(&[(BLUE, 100), (GREEN, 0)], None, Some(7)),
                ],
                vec![(BLUE, 90), (GREEN, 10)],
            ),
            (
                "two logins before the forward",
                vec![
                    cognito(1),
                    oidc(2),
                    forward_to(&[(BLUE, 100), (GREEN, 0)], Some(600), Some(3)),
                ],
                vec![(BLUE, 90), (GREEN, 10)],
            ),
        ];
        for (case, before, groups) in corpus {
            let after = retargeted(&before, &shift).unwrap();
            assert_only_groups_changed(case, &before, &after);
            let expected: Vec<(String, i32)> =
                groups.iter().map(|(a, w)| (a.to_string(), *w)).collect();
            assert_eq!(groups_of(&after), expected, "{case}");
            assert_eq!(share_of(&groups_of(&after), GREEN), 10, "{case}");
        }
    }

    #[test]
    fn the_test_listener_is_pointed_at_one_group_and_keeps_its_login() {
        let before = vec![cognito(1), forward_to(&[(BLUE, 1)], Some(300), Some(2))];
        let after = retargeted(&before, &[(GREEN, 1)]).unwrap();
        assert_only_groups_changed("test listener", &before, &after);
        assert_eq!(groups_of(&after), [(GREEN.to_string(), 1)]);
    }

    #[test]
    fn an_oidc_secret_read_back_is_written_back_without_the_keep_flag() {
        // AWS never reports the secret; a read that has one (an older API, a stand-in)
        // must not be written with UseExistingClientSecret too, which AWS refuses.
        let mut login = oidc(1);
        let config = login.authenticate_oidc_config.as_mut().unwrap();
        config.client_secret = Some("s3cret".into());
        config.use_existing_client_secret = Some(true);
        let before = vec![login, forward_to(&[(BLUE, 100), (GREEN, 0)], None, Some(2))];
        let after = retargeted(&before, &[(BLUE, 0), (GREEN, 100)]).unwrap();
        let config = after[0].authenticate_oidc_config().unwrap();
        assert_eq!(config.client_secret(), Some("s3cret"));
        assert_eq!(config.use_existing_client_secret(), None);

        let after = retargeted(
            &[oidc(1), forward_to(&[(BLUE, 1)], None, Some(2))],
            &[(GREEN, 1)],
        )
        .unwrap();
        let config = after[0].authenticate_oidc_config().unwrap();
        assert_eq!(
            (config.client_secret(), config.use_existing_client_secret()),
            (None, Some(true))
        );
    }

    #[test]
    fn a_route_that_does_not_forward_is_refused() {
        for (case, actions) in [
            ("redirect", vec![redirect()]),
            ("fixed response", vec![fixed_response(1)]),
            (
                "login then fixed response",
                vec![oidc(1), fixed_response(2)],
            ),
            ("nothing", vec![]),
        ] {
            let err = retargeted(&actions, &[(BLUE, 90), (GREEN, 10)]).unwrap_err();
            assert!(
                err.to_string()
                    .contains("does not forward to target groups"),
                "{case}: {err}"
            );
        }
    }

    #[test]
    fn shares_round_to_whole_percent() {
        let w = vec![("a".to_string(), 90), ("b".to_string(), 10)];
        assert_eq!(share_of(&w, "b"), 10);
        assert_eq!(share_of(&w, "c"), 0);
        let w = vec![("a".to_string(), 2), ("b".to_string(), 1)];
        assert_eq!(share_of(&w, "b"), 33);
        assert_eq!(share_of(&[], "b"), 0);
    }

    #[test]
    fn a_writes_answer_confirms_a_shift_only_when_it_shows_the_share_asked_for() {
        let answered = [
            oidc(1),
            forward_to(&[("blue", 90), ("green", 10)], None, Some(2)),
        ];
        assert!(confirms(&answered, "green", 10), "the share asked for");
        assert!(
            !confirms(&answered, "green", 50),
            "another share: read the route"
        );
        assert!(!confirms(&answered, "red", 10), "a group it does not name");
        assert!(
            !confirms(&[], "green", 10),
            "no route in the answer: read it"
        );
        assert!(
            !confirms(&[fixed_response(1)], "green", 0),
            "an answer without a forward confirms nothing, not even 0%"
        );
    }
}
