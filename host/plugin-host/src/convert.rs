//! Between the contract's plain types (`deployer-contract`, what the engine and journals
//! use) and the types wasmtime generates from `wit/` (what crosses into a component).
//!
//! Every match is exhaustive, so a change to `wit/types.wit` fails to compile here until
//! both sides agree; the tests pin that both serialize identically, which is what keeps
//! journals written by earlier versions readable.

use deployer_contract as plain;

use crate::bindings::types as wit;

macro_rules! same_enum {
    ($wit:ident, $name:ident { $($variant:ident),* $(,)? }) => {
        impl From<plain::$name> for $wit::$name {
            fn from(value: plain::$name) -> Self {
                match value {
                    $(plain::$name::$variant => $wit::$name::$variant,)*
                }
            }
        }
        impl From<$wit::$name> for plain::$name {
            fn from(value: $wit::$name) -> Self {
                match value {
                    $($wit::$name::$variant => plain::$name::$variant,)*
                }
            }
        }
    };
}

macro_rules! same_record {
    ($wit:ident, $name:ident { $($field:ident),* $(,)? }) => {
        impl From<plain::$name> for $wit::$name {
            fn from(value: plain::$name) -> Self {
                let plain::$name { $($field),* } = value;
                $wit::$name { $($field: $field.into()),* }
            }
        }
        impl From<$wit::$name> for plain::$name {
            fn from(value: $wit::$name) -> Self {
                let $wit::$name { $($field),* } = value;
                plain::$name { $($field: $field.into()),* }
            }
        }
    };
}

/// The types every contract version shares, unchanged since 0.1.0.
macro_rules! shared_types {
    ($wit:ident) => {
        same_enum!(
            $wit,
            GateStatus {
                Pass,
                Fail,
                Inconclusive,
                NoData
            }
        );
        same_enum!($wit, Side { Stable, New });
        same_enum!(
            $wit,
            LifecyclePoint {
                PreDeploy,
                PreTraffic,
                PostTraffic,
                PostDeploy,
                PostRollback
            }
        );
        same_enum!(
            $wit,
            TargetKind {
                EcsService,
                EksDeployment,
                AutoScalingGroup,
                Simulated
            }
        );
        same_record!(
            $wit,
            GateResult {
                name,
                status,
                detail,
                observed
            }
        );
        same_record!(
            $wit,
            TargetInfo {
                kind,
                desired_count,
                native_rolling,
                test_traffic
            }
        );
        same_record!(
            $wit,
            RollingUpdate {
                min_healthy_percent,
                max_percent
            }
        );
        same_record!($wit, ScaleRequest { side, count });
        same_record!($wit, ParamError { field, message });
        same_record!(
            $wit,
            PluginInfo {
                name,
                version,
                description
            }
        );

        impl From<plain::StepOutcome> for $wit::StepOutcome {
            fn from(value: plain::StepOutcome) -> Self {
                match value {
                    plain::StepOutcome::Done => $wit::StepOutcome::Done,
                    plain::StepOutcome::Gates(results) => {
                        $wit::StepOutcome::Gates(results.into_iter().map(Into::into).collect())
                    }
                }
            }
        }

        impl From<$wit::StepOutcome> for plain::StepOutcome {
            fn from(value: $wit::StepOutcome) -> Self {
                match value {
                    $wit::StepOutcome::Done => plain::StepOutcome::Done,
                    $wit::StepOutcome::Gates(results) => {
                        plain::StepOutcome::Gates(results.into_iter().map(Into::into).collect())
                    }
                }
            }
        }
    };
}

shared_types!(wit);
same_enum!(wit, ApprovalTimeout { RollBack, Continue });
same_record!(
    wit,
    Approval {
        timeout_ms,
        on_timeout
    }
);
same_record!(wit, StepRecord { step, outcome });

impl From<plain::Step> for wit::Step {
    fn from(value: plain::Step) -> Self {
        match value {
            plain::Step::Scale(scale) => wit::Step::Scale(scale.into()),
            plain::Step::ShiftTraffic(percent) => wit::Step::ShiftTraffic(percent),
            plain::Step::RouteTestTraffic => wit::Step::RouteTestTraffic,
            plain::Step::RunGates(point) => wit::Step::RunGates(point.into()),
            plain::Step::Bake(ms) => wit::Step::Bake(ms),
            plain::Step::RollingUpdate(update) => wit::Step::RollingUpdate(update.into()),
            plain::Step::Promote => wit::Step::Promote,
            plain::Step::Complete => wit::Step::Complete,
            plain::Step::Abort(reason) => wit::Step::Abort(reason),
            plain::Step::AwaitApproval(approval) => wit::Step::AwaitApproval(approval.into()),
        }
    }
}

impl From<wit::Step> for plain::Step {
    fn from(value: wit::Step) -> Self {
        match value {
            wit::Step::Scale(scale) => plain::Step::Scale(scale.into()),
            wit::Step::ShiftTraffic(percent) => plain::Step::ShiftTraffic(percent),
            wit::Step::RouteTestTraffic => plain::Step::RouteTestTraffic,
            wit::Step::RunGates(point) => plain::Step::RunGates(point.into()),
            wit::Step::Bake(ms) => plain::Step::Bake(ms),
            wit::Step::RollingUpdate(update) => plain::Step::RollingUpdate(update.into()),
            wit::Step::Promote => plain::Step::Promote,
            wit::Step::Complete => plain::Step::Complete,
            wit::Step::Abort(reason) => plain::Step::Abort(reason),
            wit::Step::AwaitApproval(approval) => plain::Step::AwaitApproval(approval.into()),
        }
    }
}

impl From<plain::RolloutState> for wit::RolloutState {
    fn from(value: plain::RolloutState) -> Self {
        wit::RolloutState {
            params: value.params,
            target: value.target.into(),
            history: value.history.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<wit::RolloutState> for plain::RolloutState {
    fn from(value: wit::RolloutState) -> Self {
        plain::RolloutState {
            params: value.params,
            target: value.target.into(),
            history: value.history.into_iter().map(Into::into).collect(),
        }
    }
}

/// An earlier version's types: the shared ones both ways; its steps become plain ones,
/// and a rollout state becomes its version's unless its history holds a step the
/// version does not have (which a strategy built against it cannot have asked for).
macro_rules! earlier_types {
    ($module:ident, $version:literal) => {
        mod $module {
            use super::plain;
            use crate::bindings::previous::$module::types as old;

            shared_types!(old);

            impl From<old::Step> for plain::Step {
                fn from(value: old::Step) -> Self {
                    match value {
                        old::Step::Scale(scale) => plain::Step::Scale(scale.into()),
                        old::Step::ShiftTraffic(percent) => plain::Step::ShiftTraffic(percent),
                        old::Step::RouteTestTraffic => plain::Step::RouteTestTraffic,
                        old::Step::RunGates(point) => plain::Step::RunGates(point.into()),
                        old::Step::Bake(ms) => plain::Step::Bake(ms),
                        old::Step::RollingUpdate(update) => {
                            plain::Step::RollingUpdate(update.into())
                        }
                        old::Step::Promote => plain::Step::Promote,
                        old::Step::Complete => plain::Step::Complete,
                        old::Step::Abort(reason) => plain::Step::Abort(reason),
                    }
                }
            }

            impl TryFrom<plain::Step> for old::Step {
                type Error = String;

                fn try_from(value: plain::Step) -> Result<Self, String> {
                    Ok(match value {
                        plain::Step::Scale(scale) => old::Step::Scale(scale.into()),
                        plain::Step::ShiftTraffic(percent) => old::Step::ShiftTraffic(percent),
                        plain::Step::RouteTestTraffic => old::Step::RouteTestTraffic,
                        plain::Step::RunGates(point) => old::Step::RunGates(point.into()),
                        plain::Step::Bake(ms) => old::Step::Bake(ms),
                        plain::Step::RollingUpdate(update) => {
                            old::Step::RollingUpdate(update.into())
                        }
                        plain::Step::Promote => old::Step::Promote,
                        plain::Step::Complete => old::Step::Complete,
                        plain::Step::Abort(reason) => old::Step::Abort(reason),
                        plain::Step::AwaitApproval(_) => {
                            return Err(format!(
                                "the rollout's history holds an approval pause, which contract \
                                 {} has no step for: a strategy built against it cannot have \
                                 asked for one (was the strategy changed during this deployment?)",
                                $version
                            ));
                        }
                    })
                }
            }

            impl TryFrom<plain::RolloutState> for old::RolloutState {
                type Error = String;

                fn try_from(value: plain::RolloutState) -> Result<Self, String> {
                    Ok(old::RolloutState {
                        params: value.params,
                        target: value.target.into(),
                        history: value
                            .history
                            .into_iter()
                            .map(|record| {
                                Ok(old::StepRecord {
                                    step: record.step.try_into()?,
                                    outcome: record.outcome.into(),
                                })
                            })
                            .collect::<Result<_, String>>()?,
                    })
                }
            }
        }
    };
}

earlier_types!(v0_2, "0.2.0");
earlier_types!(v0_1, "0.1.0");

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shape of every type, as the journal stores it.
    fn samples() -> Vec<plain::RolloutState> {
        use plain::*;
        let gate = |status| GateResult {
            name: "http:/health".into(),
            status,
            detail: "3/3 ok".into(),
            observed: Some(0.5),
        };
        let steps = vec![
            Step::Scale(ScaleRequest {
                side: Side::New,
                count: 3,
            }),
            Step::Scale(ScaleRequest {
                side: Side::Stable,
                count: 0,
            }),
            Step::ShiftTraffic(25),
            Step::RouteTestTraffic,
            Step::RunGates(LifecyclePoint::PreDeploy),
            Step::RunGates(LifecyclePoint::PreTraffic),
            Step::RunGates(LifecyclePoint::PostTraffic),
            Step::RunGates(LifecyclePoint::PostDeploy),
            Step::RunGates(LifecyclePoint::PostRollback),
            Step::Bake(300_000),
            Step::RollingUpdate(RollingUpdate {
                min_healthy_percent: 100,
                max_percent: 200,
            }),
            Step::Promote,
            Step::Complete,
            Step::Abort("why".into()),
            Step::AwaitApproval(Approval {
                timeout_ms: 3_600_000,
                on_timeout: ApprovalTimeout::RollBack,
            }),
            Step::AwaitApproval(Approval {
                timeout_ms: 60_000,
                on_timeout: ApprovalTimeout::Continue,
            }),
        ];
        let outcomes = [
            StepOutcome::Done,
            StepOutcome::Gates(vec![
                gate(GateStatus::Pass),
                gate(GateStatus::Fail),
                gate(GateStatus::Inconclusive),
                GateResult {
                    observed: None,
                    ..gate(GateStatus::NoData)
                },
            ]),
        ];
        [
            TargetKind::EcsService,
            TargetKind::EksDeployment,
            TargetKind::AutoScalingGroup,
            TargetKind::Simulated,
        ]
        .into_iter()
        .map(|kind| RolloutState {
            params: r#"{"steps":[]}"#.into(),
            target: TargetInfo {
                kind,
                desired_count: 4,
                native_rolling: kind == TargetKind::Simulated,
                test_traffic: true,
            },
            history: steps
                .iter()
                .zip(outcomes.iter().cycle())
                .map(|(step, outcome)| StepRecord {
                    step: step.clone(),
                    outcome: outcome.clone(),
                })
                .collect(),
        })
        .collect()
    }

    #[test]
    fn both_forms_serialize_alike_and_convert_losslessly() {
        for state in samples() {
            let generated: wit::RolloutState = state.clone().into();
            assert_eq!(
                serde_json::to_value(&generated).unwrap(),
                serde_json::to_value(&state).unwrap()
            );
            assert_eq!(plain::RolloutState::from(generated), state);
        }
    }

    #[test]
    fn earlier_versions_convert_every_step_they_have_and_refuse_approval() {
        use crate::bindings::previous::{v0_1, v0_2};
        let state = samples().remove(0);
        for record in &state.history {
            let step = record.step.clone();
            let as_v0_2 = v0_2::types::Step::try_from(step.clone());
            let as_v0_1 = v0_1::types::Step::try_from(step.clone());
            if let plain::Step::AwaitApproval(_) = step {
                assert!(
                    as_v0_2
                        .unwrap_err()
                        .contains("contract 0.2.0 has no step for")
                );
                assert!(
                    as_v0_1
                        .unwrap_err()
                        .contains("contract 0.1.0 has no step for")
                );
            } else {
                assert_eq!(plain::Step::from(as_v0_2.unwrap()), step);
                assert_eq!(plain::Step::from(as_v0_1.unwrap()), step);
            }
        }
        let without: plain::RolloutState = plain::RolloutState {
            history: state
                .history
                .iter()
                .filter(|r| !matches!(r.step, plain::Step::AwaitApproval(_)))
                .cloned()
                .collect(),
            ..state.clone()
        };
        let old = v0_2::types::RolloutState::try_from(without.clone()).unwrap();
        assert_eq!(old.history.len(), without.history.len());
        assert!(v0_2::types::RolloutState::try_from(state).is_err());
    }

    #[test]
    fn an_approval_pause_is_journaled_in_the_shape_of_its_neighbours() {
        let step = plain::Step::AwaitApproval(plain::Approval {
            timeout_ms: 3_600_000,
            on_timeout: plain::ApprovalTimeout::RollBack,
        });
        let line = r#"{"AwaitApproval":{"timeout_ms":3600000,"on_timeout":"RollBack"}}"#;
        assert_eq!(serde_json::to_string(&step).unwrap(), line);
        assert_eq!(serde_json::from_str::<plain::Step>(line).unwrap(), step);
        // Every step as a 0.2 deployer journaled it still reads.
        for line in [
            r#"{"Scale":{"side":"New","count":2}}"#,
            r#"{"ShiftTraffic":25}"#,
            r#""RouteTestTraffic""#,
            r#"{"RunGates":"PostTraffic"}"#,
            r#"{"Bake":300000}"#,
            r#"{"RollingUpdate":{"min_healthy_percent":100,"max_percent":200}}"#,
            r#""Promote""#,
            r#""Complete""#,
            r#"{"Abort":"why"}"#,
        ] {
            let step: plain::Step = serde_json::from_str(line).unwrap();
            assert_eq!(serde_json::to_string(&step).unwrap(), line);
        }
    }

    #[test]
    fn journal_lines_of_earlier_versions_still_read() {
        // As written by deployer before the contract types were their own crate.
        let step: plain::Step =
            serde_json::from_str(r#"{"Scale":{"side":"New","count":2}}"#).unwrap();
        assert_eq!(
            step,
            plain::Step::Scale(plain::ScaleRequest {
                side: plain::Side::New,
                count: 2
            })
        );
        let outcome: plain::StepOutcome = serde_json::from_str(
            r#"{"Gates":[{"name":"g","status":"NoData","detail":"","observed":null}]}"#,
        )
        .unwrap();
        assert!(
            matches!(outcome, plain::StepOutcome::Gates(g) if g[0].status == plain::GateStatus::NoData)
        );
    }
}
