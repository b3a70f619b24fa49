//! Integration suites, one module per feature (wasmtime's `tests/all` layout).

/// Snapshot CLI output in `tests/all/snapshots/` (review with `cargo insta review`),
/// with what differs between runs and machines masked: digests, deployment ids, ports,
/// timings.
macro_rules! snapshot {
    ($name:expr, $text:expr) => {
        insta::with_settings!({
            snapshot_path => "snapshots",
            prepend_module_to_snapshot => false,
            filters => vec![
                (r"\b[0-9a-f]{64}\b", "[sha256]"),
                (r"\b[A-Za-z0-9][\w.-]*-\d{8}-\d{6}-[0-9a-z]{4}\b", "[deployment]"),
                // As the step summary's cells escape it.
                (r"\b[A-Za-z0-9][\w.\\-]*\\-\d{8}\\-\d{6}\\-[0-9a-z]{4}\b", "[deployment]"),
                (r"\| duration \| \d+\.\ds \|", "| duration | [time] |"),
                (r"127\.0\.0\.1:\d+", "127.0.0.1:[port]"),
                (r"127\\\.0\\\.0\\\.1\\:\d+", r"127\.0\.0\.1\:[port]"),
                (r"in \d+\.\ds", "in [time]"),
                (r#""duration-ms": \d+"#, r#""duration-ms": "[ms]""#),
            ],
        }, {
            insta::assert_snapshot!($name, $text);
        })
    };
}

mod alb_routing;
mod asg;
mod aws_errors;
mod bad_input;
mod chaos;
mod ci_action;
mod ci_output;
mod cli;
mod cli_snapshots;
mod container_image;
mod contract_versions;
mod control;
mod crashes;
mod damaged_state;
mod ecs;
mod ecs_pair;
mod eks;
mod examples;
mod faults;
mod fleet;
mod gates;
mod history_index;
mod hostile;
mod images;
mod journal_faults;
mod lambda;
mod output_streams;
mod plan;
mod plugin_cache;
mod plugin_capabilities;
mod plugin_egress;
mod plugin_loading;
mod plugin_sandbox;
mod plugin_sdk;
mod prometheus;
mod prometheus_ground;
mod quickstart;
mod releases;
mod rollback_output;
mod rollout;
mod side_gates;
