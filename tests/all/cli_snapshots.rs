//! The CLI's output for people, pinned by insta snapshots (`tests/all/snapshots/`;
//! review changes with `cargo insta review`), and its machine-readable contracts: the
//! JSON Schemas in `docs/schema/`, shell completions and the man page.

use deployer_tests::support::cli::{repo, run, validate};
use deployer_tests::support::config::ConfigBuilder;

/// Output with what changes between runs and machines masked.
fn stable(text: &str, dir: Option<&std::path::Path>) -> String {
    let mut text = text.to_string();
    if let Some(dir) = dir {
        text = text.replace(&dir.display().to_string(), "[dir]");
    }
    text
}

#[test]
fn help() {
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    snapshot!("help", out);
    let (code, out, _) = run(&["run", "--help"]);
    assert_eq!(code, 0);
    snapshot!("help_run", out);
    let (code, out, _) = run(&["status", "--help"]);
    assert_eq!(code, 0);
    snapshot!("help_status", out);
}

#[test]
fn plan_of_each_builtin_strategy() {
    let config = repo("examples/ecs-canary/deployer.toml");
    for strategy in ["canary", "blue-green", "rolling"] {
        let (code, out, err) = run(&["plan", strategy, "--config", config.to_str().unwrap()]);
        assert_eq!(code, 0, "{err}");
        snapshot!(format!("plan_{strategy}"), out);
    }
}

#[test]
fn validation_errors() {
    let dir = tempfile::tempdir().unwrap();
    // The snapshot pins the errors' lines and columns in the file as the builder lays
    // it out.
    let config = ConfigBuilder::new().service("web", |s| {
        s.health_timeout("ten minutes")
            .ecs("c", "web", 2)
            .traffic(|t| {
                t.strs(
                    "target-groups",
                    &["arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/blue/1"],
                )
            })
            .canary_steps("[ { weight = 50 }, { weight = 120 } ]")
    });
    let (code, out, err) = validate(dir.path(), &config);
    assert_eq!(code, 3, "{out}");
    snapshot!("validate_errors", stable(&err, Some(dir.path())));
}

fn schema_file(name: &str) -> serde_json::Value {
    let path = repo(&format!("docs/schema/{name}"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn published_schemas_are_what_the_binary_prints() {
    for (which, file) in [
        ("config", "deployer.toml.json"),
        ("summary", "summary.json"),
    ] {
        let (code, out, err) = run(&["schema", which]);
        assert_eq!(code, 0, "{err}");
        let printed: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            printed,
            schema_file(file),
            "docs/schema/{file} is stale: regenerate it with `deployer schema {which} > docs/schema/{file}`"
        );
    }
}

fn toml_as_json(text: &str) -> serde_json::Value {
    let value: toml::Value = toml::from_str(text).unwrap();
    serde_json::to_value(value).unwrap()
}

#[test]
fn the_config_schema_accepts_the_examples_and_rejects_typos() {
    let validator = jsonschema::validator_for(&schema_file("deployer.toml.json")).unwrap();
    let example = std::fs::read_to_string(repo("examples/ecs-canary/deployer.toml")).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&toml_as_json(&example))
        .map(|e| e.to_string())
        .collect();
    assert_eq!(errors, Vec::<String>::new());

    let typo = example.replace("desired-count = 4", "desired-cont = 4");
    assert!(!validator.is_valid(&toml_as_json(&typo)));
    let wrong_type = example.replace("desired-count = 4", "desired-count = \"four\"");
    assert!(!validator.is_valid(&toml_as_json(&wrong_type)));
    let unknown_gate = example.replace("kind = \"alarm\"", "kind = \"alarms\"");
    assert!(!validator.is_valid(&toml_as_json(&unknown_gate)));
}

#[test]
fn completions_and_man_page() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = run(&["completions", shell]);
        assert_eq!(code, 0, "{err}");
        for word in ["rollback", "--output", "--watch"] {
            assert!(out.contains(word), "{shell} completions lack {word}");
        }
    }
    let (code, out, err) = run(&["man"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(".ie") || out.contains(".TH deployer"),
        "{out}"
    );
    assert!(out.contains("rollback"), "{out}");
    let (code, _, err) = run(&["completions", "tcsh"]);
    assert_eq!(code, 3, "{err}");
}
