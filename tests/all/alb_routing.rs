//! A traffic change touches only the weights of the ALB route it acts on. A listener
//! and a rule that log users in (`authenticate-oidc`, order 1) before a sticky forward
//! (order 2), and a test listener that logs them in with Cognito, go through a promoted
//! canary, a promoted blue-green, a canary rolled back by its smoke test and a manual
//! `deployer rollback`, each once with production traffic on the listener and once on
//! the rule. While a run goes on, every route is read every 20 ms: none may be seen
//! without its login or its stickiness, not even for one shift. After it, the route in
//! use carries the same actions as before with only the forward's weights changed, the
//! test listener only its target group, and the route the service does not use nothing.
//!
//! moto stores and reports every action field these routes use; `support/moto_ecs.py`
//! makes it report and refuse them as AWS does (no `ClientSecret` in what it reports, a
//! forward to one group reported with both `TargetGroupArn` and `ForwardConfig`, a
//! write naming different groups in the two refused, an OIDC action written without its
//! secret or `UseExistingClientSecret` refused). It does not make authentication
//! actions need an HTTPS listener, as AWS does: the world's listeners are HTTP.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::Client;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, AuthenticateCognitoActionConditionalBehaviorEnum,
    AuthenticateCognitoActionConfig, AuthenticateOidcActionConditionalBehaviorEnum,
    AuthenticateOidcActionConfig, ForwardActionConfig, TargetGroupStickinessConfig,
    TargetGroupTuple,
};

use deployer_tests::support::App;
use deployer_tests::support::config::ConfigBuilder;
use deployer_tests::support::env::EcsEnv;

use super::ecs::STEPS;

/// How long a user stays on one target group, on the production routes and on the test
/// listener.
const STICKY: i32 = 600;
const TEST_STICKY: i32 = 300;

/// Where the service's production traffic is.
#[derive(Clone, Copy, Debug, PartialEq)]
enum On {
    Listener,
    Rule,
}

/// One route of the world's load balancer.
#[derive(Clone, Debug)]
struct Route {
    name: &'static str,
    arn: String,
    rule: bool,
}

impl Route {
    async fn actions(&self, elb: &Client) -> Vec<Action> {
        if self.rule {
            let out = elb
                .describe_rules()
                .rule_arns(&self.arn)
                .send()
                .await
                .unwrap();
            out.rules()[0].actions().to_vec()
        } else {
            let out = elb
                .describe_listeners()
                .listener_arns(&self.arn)
                .send()
                .await
                .unwrap();
            out.listeners()[0].default_actions().to_vec()
        }
    }

    async fn set(&self, elb: &Client, actions: Vec<Action>) {
        if self.rule {
            elb.modify_rule()
                .rule_arn(&self.arn)
                .set_actions(Some(actions))
                .send()
                .await
                .unwrap();
        } else {
            elb.modify_listener()
                .listener_arn(&self.arn)
                .set_default_actions(Some(actions))
                .send()
                .await
                .unwrap();
        }
    }
}

fn oidc() -> Action {
    Action::builder()
        .r#type(ActionTypeEnum::AuthenticateOidc)
        .order(1)
        .authenticate_oidc_config(
            AuthenticateOidcActionConfig::builder()
                .issuer("https://login.shop.example.com")
                .authorization_endpoint("https://login.shop.example.com/authorize")
                .token_endpoint("https://login.shop.example.com/token")
                .user_info_endpoint("https://login.shop.example.com/userinfo")
                .client_id("shop-web")
                .client_secret("oidc-client-secret")
                .session_cookie_name("shop-session")
                .scope("openid email")
                .session_timeout(3600)
                .authentication_request_extra_params("prompt", "login")
                .on_unauthenticated_request(
                    AuthenticateOidcActionConditionalBehaviorEnum::Authenticate,
                )
                .build(),
        )
        .build()
}

fn cognito() -> Action {
    Action::builder()
        .r#type(ActionTypeEnum::AuthenticateCognito)
        .order(1)
        .authenticate_cognito_config(
            AuthenticateCognitoActionConfig::builder()
                .user_pool_arn("arn:aws:cognito-idp:us-east-1:123456789012:userpool/us-east-1_Shop")
                .user_pool_client_id("shop-testers")
                .user_pool_domain("shop-testers")
                .scope("openid")
                .on_unauthenticated_request(AuthenticateCognitoActionConditionalBehaviorEnum::Deny)
                .build(),
        )
        .build()
}

/// A forward (order 2) to `groups` with stickiness for `sticky` seconds.
fn sticky_forward(groups: &[(&str, i32)], sticky: i32) -> Action {
    let mut config = ForwardActionConfig::builder().target_group_stickiness_config(
        TargetGroupStickinessConfig::builder()
            .enabled(true)
            .duration_seconds(sticky)
            .build(),
    );
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
        .order(2)
        .forward_config(config.build())
        .build()
}

/// The forward action of `actions`.
fn forward_of(actions: &mut [Action]) -> &mut Action {
    actions
        .iter_mut()
        .find(|a| a.r#type == Some(ActionTypeEnum::Forward))
        .expect("the route forwards")
}

/// `actions` with the forward's target groups in ARN order (the ALB does not care for
/// their order, and neither does this test).
fn canonical(mut actions: Vec<Action>) -> Vec<Action> {
    let forward = forward_of(&mut actions);
    if let Some(groups) = forward
        .forward_config
        .as_mut()
        .and_then(|c| c.target_groups.as_mut())
    {
        groups.sort_by(|a, b| a.target_group_arn.cmp(&b.target_group_arn));
    }
    actions
}

/// `actions` with the forward's target groups (and its `TargetGroupArn`, which AWS
/// reports for a forward to one group) set to `groups`: what a traffic change may do.
fn retargeted(mut actions: Vec<Action>, groups: &[(&str, i32)]) -> Vec<Action> {
    let forward = forward_of(&mut actions);
    let config = forward.forward_config.as_mut().expect("a forward config");
    config.target_groups = Some(
        groups
            .iter()
            .map(|(arn, w)| {
                TargetGroupTuple::builder()
                    .target_group_arn(*arn)
                    .weight(*w)
                    .build()
            })
            .collect(),
    );
    forward.target_group_arn = (groups.len() == 1).then(|| groups[0].0.to_string());
    canonical(actions)
}

/// `actions` with no target group named: what no traffic change may alter.
fn shape(mut actions: Vec<Action>) -> Vec<Action> {
    let forward = forward_of(&mut actions);
    forward.target_group_arn = None;
    if let Some(config) = forward.forward_config.as_mut() {
        config.target_groups = None;
    }
    actions
}

/// Assert that `route` still logs users in with `auth` first and forwards with
/// stickiness for `sticky` seconds, and that it is `before` with its forward set to
/// `groups`.
fn assert_guarded(
    when: &str,
    route: &Route,
    now: &[Action],
    before: &[Action],
    groups: &[(&str, i32)],
    sticky: i32,
) {
    let what = format!("{when}, {}", route.name);
    assert_eq!(
        now.first().map(|a| (a.r#type.clone(), a.order)),
        before.first().map(|a| (a.r#type.clone(), a.order)),
        "{what}: the login is no longer the first action: {now:#?}"
    );
    assert_eq!(
        (
            now[0].authenticate_oidc_config.as_ref(),
            now[0].authenticate_cognito_config.as_ref()
        ),
        (
            before[0].authenticate_oidc_config.as_ref(),
            before[0].authenticate_cognito_config.as_ref()
        ),
        "{what}: the login's configuration changed"
    );
    let stickiness = now
        .iter()
        .find(|a| a.r#type == Some(ActionTypeEnum::Forward))
        .and_then(|a| a.forward_config.as_ref())
        .and_then(|c| c.target_group_stickiness_config.as_ref());
    assert_eq!(
        stickiness.map(|s| (s.enabled, s.duration_seconds)),
        Some((Some(true), Some(sticky))),
        "{what}: stickiness is gone: {now:#?}"
    );
    assert_eq!(
        canonical(now.to_vec()),
        retargeted(before.to_vec(), groups),
        "{what}: more than the forward's target groups changed"
    );
}

/// The ECS world with its listener, rule and test listener logging users in before a
/// sticky forward, and `web` deploying on `on`.
struct Guarded {
    env: EcsEnv,
    on: On,
    listener: Route,
    rule: Route,
    test_listener: Route,
    /// The routes' actions as AWS reports them once set.
    before: [Vec<Action>; 3],
}

impl Guarded {
    async fn start(on: On) -> Guarded {
        let env = EcsEnv::start(&[]).await;
        let world = &env.world;
        let route = |name, arn: &str, rule| Route {
            name,
            arn: arn.to_string(),
            rule,
        };
        let listener = route("the listener", &world.listener, false);
        let rule = route("the rule", &world.rule, true);
        let test_listener = route("the test listener", &world.test_listener, false);
        let (blue, green) = (world.blue.as_str(), world.green.as_str());
        let elb = &env.clients.elb;
        let production = vec![oidc(), sticky_forward(&[(blue, 100), (green, 0)], STICKY)];
        listener.set(elb, production.clone()).await;
        rule.set(elb, production).await;
        test_listener
            .set(
                elb,
                vec![cognito(), sticky_forward(&[(blue, 1)], TEST_STICKY)],
            )
            .await;
        let before = [
            listener.actions(elb).await,
            rule.actions(elb).await,
            test_listener.actions(elb).await,
        ];
        Guarded {
            env,
            on,
            listener,
            rule,
            test_listener,
            before,
        }
    }

    /// `web` on task sets smoke-tested against `app`, its production traffic on `on`.
    fn config(&self, app: &App) -> ConfigBuilder {
        let config = self.env.task_sets(&app.url, STEPS);
        match self.on {
            On::Listener => config,
            On::Rule => config.service("web", |s| {
                s.traffic(|t| t.remove("listener-arn").str("rule-arn", &self.rule.arn))
            }),
        }
    }

    fn routes(&self) -> [&Route; 3] {
        [&self.listener, &self.rule, &self.test_listener]
    }

    /// `deployer ARGS`, with every route read every 20 ms while it runs: (exit code,
    /// stdout, stderr) once it ends, after asserting that no read found a route without
    /// its login or its stickiness, or with another change than its target groups (the
    /// failure shows the first such read of each route).
    async fn deployer(&self, args: &[&str]) -> (i32, String, String) {
        let stop = Arc::new(AtomicBool::new(false));
        let elb = self.env.clients.elb.clone();
        let routes: Vec<(Route, Vec<Action>)> = self
            .routes()
            .iter()
            .zip(&self.before)
            .map(|(r, b)| ((*r).clone(), shape(b.clone())))
            .collect();
        let flag = stop.clone();
        let watcher = tokio::spawn(async move {
            let (mut reads, mut seen) = (0, Vec::new());
            while !flag.load(Ordering::Relaxed) {
                for (route, expected) in &routes {
                    let now = route.actions(&elb).await;
                    reads += 1;
                    let first = !seen.iter().any(|(name, _)| *name == route.name);
                    if shape(now.clone()) != *expected && first {
                        seen.push((route.name, format!("{now:#?}")));
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (reads, seen)
        });
        let out = self.env.deployer(args).await;
        stop.store(true, Ordering::Relaxed);
        let (reads, seen) = watcher.await.unwrap();
        assert!(reads > 0, "the routes were never read");
        let seen: Vec<String> = seen
            .iter()
            .map(|(name, actions)| format!("{name}: {actions}"))
            .collect();
        assert!(
            seen.is_empty(),
            "deployer {args:?} changed more than target groups while it ran; first seen:\n{}",
            seen.join("\n")
        );
        out
    }

    /// Assert the routes after a run: the production route logs users in and forwards
    /// with stickiness to blue and green with these weights, the test listener forwards
    /// to `test_group`, and the route the service does not use is as it was.
    async fn assert_routes(&self, when: &str, weights: (i32, i32), test_group: &str) {
        let elb = &self.env.clients.elb;
        let world = &self.env.world;
        let (blue, green) = (world.blue.as_str(), world.green.as_str());
        let (used, unused) = match self.on {
            On::Listener => ((&self.listener, 0), (&self.rule, 1)),
            On::Rule => ((&self.rule, 1), (&self.listener, 0)),
        };
        let production = [(blue, weights.0), (green, weights.1)];
        let (route, i) = used;
        let now = route.actions(elb).await;
        assert_guarded(when, route, &now, &self.before[i], &production, STICKY);
        let (route, i) = unused;
        let now = route.actions(elb).await;
        assert_guarded(
            when,
            route,
            &now,
            &self.before[i],
            &[(blue, 100), (green, 0)],
            STICKY,
        );
        let now = self.test_listener.actions(elb).await;
        assert_guarded(
            when,
            &self.test_listener,
            &now,
            &self.before[2],
            &[(test_group, 1)],
            TEST_STICKY,
        );
    }
}

/// A canary of web:2 promoted: 10%, 50%, 100% on green.
async fn promoted_canary(on: On) {
    let good = App::start(200, "ok");
    let g = Guarded::start(on).await;
    g.env.write(&g.config(&good));
    let (code, out, err) = g.deployer(&["run", "canary", "--release", "web:2"]).await;
    assert_eq!(code, 0, "{on:?}: {out}\n{err}");
    assert_eq!(g.env.journal_shifts(), [10, 50, 100], "{on:?}");
    // The canary sends test traffic to the new side before its first shift.
    let green = g.env.world.green.clone();
    g.assert_routes(&format!("{on:?}, promoted canary"), (0, 100), &green)
        .await;
}

/// A blue-green run of web:2 promoted: test traffic on green, then all of production.
async fn promoted_blue_green(on: On) {
    let good = App::start(200, "ok");
    let g = Guarded::start(on).await;
    g.env.write(&g.config(&good));
    let (code, out, err) = g
        .deployer(&["run", "blue-green", "--release", "web:2"])
        .await;
    assert_eq!(code, 0, "{on:?}: {out}\n{err}");
    assert!(out.contains("promoted"), "{on:?}: {out}");
    let green = g.env.world.green.clone();
    g.assert_routes(&format!("{on:?}, promoted blue-green"), (0, 100), &green)
        .await;
}

/// A canary of web:2 whose smoke test fails after its first shift (10%): rolled back,
/// all traffic on blue again.
async fn rolled_back_canary(on: On) {
    let bad = App::start(500, "boom");
    let g = Guarded::start(on).await;
    // Smoke-tested after each shift only, so the failure comes with traffic on green.
    g.env.write(&g.config(&bad).service("web", |s| {
        s.edit_gates("http", |h| h.strs("at", &["post-traffic"]))
    }));
    let (code, out, err) = g.deployer(&["run", "canary", "--release", "web:2"]).await;
    assert_eq!(code, 1, "{on:?}: {out}\n{err}");
    assert!(
        out.contains("rolled back") && out.contains("0/5 requests"),
        "{on:?}: {out}"
    );
    assert_eq!(
        g.env.journal_shifts().first(),
        Some(&10),
        "{on:?}: the canary held traffic before it was rolled back"
    );
    // The rollback gave the test listener back to the stable side (blue).
    let blue = g.env.world.blue.clone();
    g.assert_routes(&format!("{on:?}, rolled-back canary"), (100, 0), &blue)
        .await;
}

/// A promoted canary of web:2, then `deployer rollback`: web:1 and all traffic on blue.
async fn manual_rollback(on: On) {
    let good = App::start(200, "ok");
    let g = Guarded::start(on).await;
    g.env.write(&g.config(&good));
    let green = g.env.world.green.clone();
    let (code, out, err) = g.deployer(&["run", "canary", "--release", "web:2"]).await;
    assert_eq!(code, 0, "{on:?}: {out}\n{err}");
    g.assert_routes(&format!("{on:?}, promoted canary"), (0, 100), &green)
        .await;

    let (code, out, err) = g.deployer(&["rollback"]).await;
    assert_eq!(code, 0, "{on:?}: {out}\n{err}");
    assert_eq!(g.env.primary().await, ("web:1".to_string(), 1), "{on:?}");
    // Test traffic stays where the canary sent it.
    g.assert_routes(&format!("{on:?}, manual rollback"), (100, 0), &green)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_canary_keeps_the_listeners_login_and_stickiness() {
    promoted_canary(On::Listener).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_canary_keeps_the_rules_login_and_stickiness() {
    promoted_canary(On::Rule).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_blue_green_keeps_the_listeners_and_test_listeners_login_and_stickiness() {
    promoted_blue_green(On::Listener).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_blue_green_keeps_the_rules_and_test_listeners_login_and_stickiness() {
    promoted_blue_green(On::Rule).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_rolled_back_by_its_smoke_test_keeps_the_listeners_login_and_stickiness() {
    rolled_back_canary(On::Listener).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_rolled_back_by_its_smoke_test_keeps_the_rules_login_and_stickiness() {
    rolled_back_canary(On::Rule).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_rollback_keeps_the_listeners_login_and_stickiness() {
    manual_rollback(On::Listener).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_rollback_keeps_the_rules_login_and_stickiness() {
    manual_rollback(On::Rule).await;
}
