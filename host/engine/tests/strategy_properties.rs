//! The built-in strategies, compiled natively, over their whole input range (any
//! `desired` a `TargetInfo` can carry, every parameter they accept and many they do
//! not), run through the host's plan simulation: the path `deployer plan` and the
//! preflight of `run` take, which checks each step against the `SafetyGuard`.
//!
//! For every input exactly one of these holds, and the test knows which from the input
//! alone:
//! - parameters out of range are refused by the strategy's validation, naming the field;
//! - a strategy whose steps do not fit the target's shape is refused by the host at the
//!   first step that would change anything;
//! - a rollout the strategy cannot run well (too many batches, a test listener it was
//!   told to require) is aborted by the strategy before any change, naming the numbers;
//! - otherwise every step is accepted, and the plan ends promoted with 100% of traffic
//!   on the new side at the desired count and nothing left on the old side.

use std::marker::PhantomData;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use deployer_contract::{RolloutState, Step, TargetInfo, TargetKind};
use deployer_engine::plan::{Ending, Plan, PlanError, simulate};
use deployer_engine::safety::{MAX_BAKE_MS, SafetyGuard};
use deployer_engine::strategy::{Strategy as EngineStrategy, StrategyError};
use deployer_plugin_sdk as sdk;
use proptest::prelude::*;

/// A strategy crate's own Rust behind the engine's trait (as in `native.rs`): the SDK's
/// types and the contract's serialize alike, so the state and the step cross as JSON.
struct Native<S>(&'static str, PhantomData<S>);

fn convert<T: serde::Serialize, U: serde::de::DeserializeOwned>(value: &T) -> U {
    serde_json::from_value(serde_json::to_value(value).unwrap()).unwrap()
}

impl<S: sdk::Strategy + Send + Sync> EngineStrategy for Native<S> {
    fn name(&self) -> &str {
        self.0
    }

    fn digest(&self) -> &str {
        "native"
    }

    async fn next(&self, state: &RolloutState) -> Result<Step, StrategyError> {
        let state: sdk::RolloutState = convert(state);
        let step = sdk::strategy::next::<S>(&state).map_err(StrategyError)?;
        Ok(convert(&step))
    }
}

const CANARY: Native<deployer_strategy_canary::Canary> = Native("canary", PhantomData);
const BLUE_GREEN: Native<deployer_strategy_blue_green::BlueGreen> =
    Native("blue-green", PhantomData);
const ROLLING: Native<deployer_strategy_rolling::Rolling> = Native("rolling", PhantomData);

/// The simulation never waits (native strategies answer at once), so one poll runs it
/// to the end; thousands of cases need no runtime each.
fn simulate_now(
    strategy: &impl EngineStrategy,
    params: &str,
    target: TargetInfo,
) -> Result<Plan, PlanError> {
    let mut future = pin!(simulate(strategy, params, target));
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(result) => result,
        Poll::Pending => panic!("a native strategy's plan waited on something"),
    }
}

/// What the host knows after every step of `plan`, each re-checked on the way.
fn end_state(plan: &Plan, target: &TargetInfo) -> SafetyGuard {
    let mut guard = SafetyGuard::new(target);
    for step in &plan.steps {
        guard.check(step).unwrap();
        guard.apply(step);
    }
    guard
}

fn assert_promoted_at_full_size(plan: &Plan, target: &TargetInfo) {
    assert_eq!(plan.ending, Ending::Completed, "{:?}", plan.steps);
    let end = end_state(plan, target);
    assert!(end.promoted);
    assert_eq!(end.new_percent, 100);
    assert_eq!(end.new_units, target.desired_count);
    assert_eq!(end.stable_units, 0);
}

/// Refused by the host at its first change, a side by side step on a target updated
/// in place: only gates ran before it.
fn assert_refused_as_in_place(strategy: &impl EngineStrategy, params: &str, target: TargetInfo) {
    match simulate_now(strategy, params, target) {
        Err(PlanError::Unsafe {
            number,
            violation,
            step,
        }) => {
            assert!(violation.reason.contains("updated in place"), "{violation}");
            assert!(
                matches!(
                    step,
                    Step::Scale(_) | Step::ShiftTraffic(_) | Step::RouteTestTraffic
                ),
                "{step:?}"
            );
            // The steps before it: canary and blue-green script the same steps whatever
            // the target's shape, so the side by side plan shows them.
            let side_by_side = TargetInfo {
                native_rolling: false,
                ..target
            };
            let plan = simulate_now(strategy, params, side_by_side).unwrap();
            for before in &plan.steps[..number - 1] {
                assert!(
                    matches!(before, Step::RunGates(_)),
                    "{before:?} changed the target first"
                );
            }
        }
        other => panic!("expected an in-place refusal, got {other:?}"),
    }
}

fn assert_invalid(result: Result<Plan, PlanError>, field: &str) {
    match result {
        Err(PlanError::Strategy(StrategyError(message))) => assert!(
            message.starts_with("invalid strategy parameters") && message.contains(field),
            "{message} (expected `{field}`)"
        ),
        other => panic!("expected `{field}` to be refused, got {other:?}"),
    }
}

fn desired() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        Just(1u32),
        Just(u32::MAX),
        2..=200u32,
        any::<u32>()
    ]
}

fn target() -> impl Strategy<Value = TargetInfo> {
    (desired(), any::<bool>(), any::<bool>()).prop_map(|(desired, in_place, test)| TargetInfo {
        kind: TargetKind::Simulated,
        desired_count: desired,
        native_rolling: in_place,
        test_traffic: test,
    })
}

/// Bakes in milliseconds, around the host's limit and up to u64::MAX.
fn bake() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(MAX_BAKE_MS),
        Just(MAX_BAKE_MS + 1),
        1..=MAX_BAKE_MS,
        any::<u64>()
    ]
}

/// The `gates` table, as JSON, and whether its retry interval is too long.
fn gates() -> impl Strategy<Value = (String, bool)> {
    (bake(), any::<u32>()).prop_map(|(retry, retries)| {
        (
            format!(r#"{{"retry-interval":"{retry}ms","max-retries":{retries}}}"#),
            retry > MAX_BAKE_MS,
        )
    })
}

/// Canary weights: strictly increasing percentages, or anything a u32 holds.
fn weights() -> impl Strategy<Value = Vec<u32>> {
    prop_oneof![
        proptest::collection::btree_set(1..=100u32, 1..=6).prop_map(|w| w.into_iter().collect()),
        proptest::collection::vec(prop_oneof![0..=101u32, any::<u32>()], 0..=4),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn canary(
        target in target(),
        weights in weights(),
        bakes in proptest::collection::vec(bake(), 6),
        scale_with_traffic in any::<bool>(),
        (gates, bad_retry) in gates(),
    ) {
        let steps: Vec<String> = weights
            .iter()
            .zip(&bakes)
            .map(|(w, b)| format!(r#"{{"weight":{w},"bake":"{b}ms"}}"#))
            .collect();
        let params = format!(
            r#"{{"steps":[{}],"scale-with-traffic":{scale_with_traffic},"gates":{gates}}}"#,
            steps.join(",")
        );
        let result = simulate_now(&CANARY, &params, target);
        let bad_weight = weights.iter().enumerate().find(|(i, w)| {
            !(1..=100).contains(*w) || (*i > 0 && **w <= weights[*i - 1])
        });
        let bad_bake = bakes[..weights.len()].iter().position(|b| *b > MAX_BAKE_MS);
        if weights.is_empty() {
            assert_invalid(result, "steps");
        } else if let Some((i, _)) = bad_weight {
            assert_invalid(result, &format!("steps[{i}].weight"));
        } else if let Some(i) = bad_bake {
            assert_invalid(result, &format!("steps[{i}].bake"));
        } else if bad_retry {
            assert_invalid(result, "gates.retry-interval");
        } else if target.native_rolling {
            assert_refused_as_in_place(&CANARY, &params, target);
        } else {
            let plan = result.unwrap();
            assert_promoted_at_full_size(&plan, &target);
            let shifts: Vec<u8> = plan
                .steps
                .iter()
                .filter_map(|s| if let Step::ShiftTraffic(p) = s { Some(*p) } else { None })
                .collect();
            let mut expected: Vec<u8> = weights.iter().map(|w| *w as u8).collect();
            if expected.last() != Some(&100) {
                expected.push(100);
            }
            prop_assert_eq!(shifts, expected);
        }
    }

    #[test]
    fn blue_green(
        target in target(),
        test_traffic in prop_oneof![Just("\"auto\""), Just("true"), Just("false")],
        bake in bake(),
        (gates, bad_retry) in gates(),
    ) {
        let params = format!(
            r#"{{"test-traffic":{test_traffic},"bake":"{bake}ms","gates":{gates}}}"#
        );
        let result = simulate_now(&BLUE_GREEN, &params, target);
        if bake > MAX_BAKE_MS {
            assert_invalid(result, "bake");
        } else if bad_retry {
            assert_invalid(result, "gates.retry-interval");
        } else if test_traffic == "true" && !target.test_traffic {
            let plan = result.unwrap();
            prop_assert_eq!(plan.steps.len(), 1);
            prop_assert!(matches!(&plan.ending, Ending::Aborted(why) if why.contains("test-listener")));
        } else if target.native_rolling {
            assert_refused_as_in_place(&BLUE_GREEN, &params, target);
        } else {
            let plan = result.unwrap();
            assert_promoted_at_full_size(&plan, &target);
            let routed = plan.steps.contains(&Step::RouteTestTraffic);
            // Never to a service sized to zero units: no new unit would answer.
            let wanted =
                test_traffic == "true" || (test_traffic == "\"auto\"" && target.test_traffic);
            prop_assert_eq!(routed, wanted && target.desired_count > 0);
        }
    }

    #[test]
    fn rolling(
        target in target(),
        batch in prop_oneof![
            Just(None),
            prop_oneof![Just(0u32), Just(1), Just(u32::MAX), 2..=50u32, any::<u32>()]
                .prop_map(|n| Some((n, false))),
            (0..=110u32).prop_map(|p| Some((p, true))),
        ],
        min_healthy in prop_oneof![0..=100u32, Just(101u32), any::<u32>()],
        bake in bake(),
        (gates, bad_retry) in gates(),
    ) {
        let batch_json = match batch {
            None => String::new(),
            Some((n, false)) => format!(r#""batch-size":{n},"#),
            Some((p, true)) => format!(r#""batch-size":"{p}%","#),
        };
        let params = format!(
            r#"{{{batch_json}"min-healthy-percent":{min_healthy},"bake":"{bake}ms","gates":{gates}}}"#
        );
        let result = simulate_now(&ROLLING, &params, target);
        let desired = u128::from(target.desired_count);
        let percent_of = |p: u32| (desired * u128::from(p)).div_ceil(100);
        let bad_batch = matches!(batch, Some((0, _))) || matches!(batch, Some((p, true)) if p > 100);
        let invalid = if min_healthy > 100 {
            Some("min-healthy-percent")
        } else if bad_batch {
            Some("batch-size")
        } else if bake > MAX_BAKE_MS {
            Some("bake")
        } else if bad_retry {
            Some("gates.retry-interval")
        } else {
            None
        };
        if let Some(field) = invalid {
            assert_invalid(result, field);
            return Ok(());
        }
        let plan = result.unwrap();
        let min = percent_of(min_healthy);
        if target.native_rolling {
            assert_promoted_at_full_size(&plan, &target);
            let rolls: Vec<_> = plan
                .steps
                .iter()
                .filter_map(|s| if let Step::RollingUpdate(r) = s { Some(*r) } else { None })
                .collect();
            prop_assert_eq!(rolls.len(), 1);
            prop_assert_eq!(rolls[0].min_healthy_percent, min_healthy);
            // A surge only when taking a batch down first would break min-healthy.
            prop_assert!((100..=200).contains(&rolls[0].max_percent), "{:?}", rolls[0]);
            return Ok(());
        }
        let batch_units = match batch {
            Some((n, false)) => u128::from(n),
            Some((p, true)) => percent_of(p),
            None => desired - min,
        }
        .clamp(1, desired.max(1));
        let batches = desired.div_ceil(batch_units).max(1);
        if batches > 1_000 {
            prop_assert_eq!(plan.steps.len(), 1);
            let Ending::Aborted(why) = &plan.ending else {
                panic!("expected an abort, got {:?}", plan.ending)
            };
            prop_assert!(why.contains(&format!("gives {batches} batches of {batch_units} unit(s)")), "{}", why);
            return Ok(());
        }
        assert_promoted_at_full_size(&plan, &target);
        let shifts = plan.steps.iter().filter(|s| matches!(s, Step::ShiftTraffic(_))).count();
        prop_assert_eq!(shifts as u128, batches);
        // Healthy units never drop below min-healthy, nor does a side grow past a batch
        // more than the desired count.
        let mut guard = SafetyGuard::new(&target);
        for step in &plan.steps {
            guard.apply(step);
            let (stable, new) = (u128::from(guard.stable_units), u128::from(guard.new_units));
            prop_assert!(stable + new >= min, "{stable}+{new} < {min} after {step:?}");
            prop_assert!(stable + new <= desired + batch_units, "{stable}+{new} after {step:?}");
        }
    }
}
