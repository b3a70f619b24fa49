//! The Rust plugin SDK as a plugin author gets it: published to crates.io (what `cargo
//! package` puts in it), named by version in a crate `deployer plugin new` scaffolds
//! outside any checkout, by a relative path inside a checkout, and by `--sdk-path` when
//! told. (The guide's scaffold-build-test-use walk, with `--sdk-path`, is in `ecs`.)

use std::path::{Path, PathBuf};
use std::process::Command;

use deployer_tests::support::cli::{plain, repo};

/// The SDK's requirement a scaffold should write: this deployer's `MAJOR.MINOR`.
fn sdk_requirement() -> String {
    let version = env!("CARGO_PKG_VERSION");
    let mut parts = version.split('.');
    format!("{}.{}", parts.next().unwrap(), parts.next().unwrap())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// `deployer ARGS` in `dir`; (success, stdout, stderr).
fn deployer_in(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = plain().args(args).current_dir(dir).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The line of `crate_dir/Cargo.toml` that names the SDK.
fn sdk_line(crate_dir: &Path) -> String {
    let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
    manifest
        .lines()
        .find(|line| line.starts_with("deployer-plugin-sdk"))
        .unwrap_or_else(|| panic!("no SDK dependency in\n{manifest}"))
        .to_string()
}

/// `wit/*.wit` of `dir`, by file name.
fn wit_files(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "wit"))
        .map(|path| {
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&path).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// The SDK's bindings are generated from its own copy of the contract (a published crate
/// holds only its own files); a contract change must reach it.
#[test]
fn the_sdk_wit_is_the_contract() {
    let contract = wit_files(&repo("wit"));
    let copy = wit_files(&repo("plugins/sdk/wit"));
    let names = |files: &[(String, String)]| files.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&copy),
        names(&contract),
        "plugins/sdk/wit/ must hold the files of wit/ (not wit/previous/): cp wit/*.wit plugins/sdk/wit/"
    );
    for ((name, copied), (_, original)) in copy.iter().zip(&contract) {
        assert!(
            copied == original,
            "plugins/sdk/wit/{name} differs from wit/{name}: cp wit/*.wit plugins/sdk/wit/"
        );
    }
}

/// Pack the SDK and the contract as crates.io would get them (`--no-verify`: building
/// the scaffolds against them below is the verification, and a stricter one, with the
/// features a plugin uses) and unpack them in `dir`. Returns the unpacked crates' dirs.
fn publish_locally(dir: &Path) -> Vec<PathBuf> {
    let target = dir.join("package-target");
    let out = cargo()
        .args([
            "package",
            "--package",
            "deployer-contract",
            "--package",
            "deployer-plugin-sdk",
            "--no-verify",
            "--allow-dirty",
            "--locked",
            "--quiet",
            "--manifest-path",
        ])
        .arg(repo("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo package: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let unpacked = dir.join("crates");
    std::fs::create_dir_all(&unpacked).unwrap();
    let version = env!("CARGO_PKG_VERSION");
    ["deployer-contract", "deployer-plugin-sdk"]
        .iter()
        .map(|name| {
            let crate_file = target.join(format!("package/{name}-{version}.crate"));
            let status = Command::new("tar")
                .arg("xzf")
                .arg(&crate_file)
                .arg("-C")
                .arg(&unpacked)
                .status()
                .unwrap();
            assert!(status.success(), "unpacking {}", crate_file.display());
            unpacked.join(format!("{name}-{version}"))
        })
        .collect()
}

/// A user outside any checkout: the scaffold names the SDK by version, and a hook and a
/// strategy built against the SDK as published (through `[patch.crates-io]`, as no
/// registry has it here) load and pass their scaffolded scenarios in the real host.
#[test]
fn scaffolds_outside_a_checkout_build_against_the_published_sdk() {
    let dir = tempfile::tempdir().unwrap();
    let crates = publish_locally(dir.path());
    let (contract, sdk) = (&crates[0], &crates[1]);

    // What the published SDK holds: its WIT, and the contract by version, not by path.
    for file in ["worlds.wit", "types.wit", "capabilities.wit"] {
        assert!(
            sdk.join("wit").join(file).is_file(),
            "packaged SDK lacks wit/{file}"
        );
    }
    let manifest: toml::Table =
        toml::from_str(&std::fs::read_to_string(sdk.join("Cargo.toml")).unwrap()).unwrap();
    let dependency = &manifest["dependencies"]["deployer-contract"];
    assert!(dependency.get("path").is_none(), "{dependency}");
    assert_eq!(
        dependency.get("version").and_then(|v| v.as_str()),
        Some(env!("CARGO_PKG_VERSION"))
    );

    let patch = |path: &Path| toml::Value::String(path.display().to_string()).to_string();
    std::fs::create_dir_all(dir.path().join(".cargo")).unwrap();
    std::fs::write(
        dir.path().join(".cargo/config.toml"),
        format!(
            "[patch.crates-io]\ndeployer-plugin-sdk = {{ path = {} }}\ndeployer-contract = {{ path = {} }}\n",
            patch(sdk),
            patch(contract)
        ),
    )
    .unwrap();

    for (name, kind, expected) in [("ready-check", "hook", 2), ("steps", "strategy", 2)] {
        let (ok, out, err) = deployer_in(dir.path(), &["plugin", "new", name, "--kind", kind]);
        assert!(ok, "{out}{err}");
        assert!(out.contains("the SDK from crates.io"), "{out}");
        let crate_dir = dir.path().join(name);
        assert_eq!(
            sdk_line(&crate_dir),
            format!(
                "deployer-plugin-sdk = {{ version = \"{}\", features = [\"{kind}\"] }}",
                sdk_requirement()
            )
        );
        let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
        assert!(!manifest.contains("path ="), "{manifest}");

        let (ok, out, err) = deployer_in(dir.path(), &["plugin", "build", name]);
        assert!(ok, "{out}{err}");
        assert!(out.contains(&format!("a {kind} plugin")), "{out}");
        let wasm = format!("{name}/target/{name}.wasm");
        let scenario = format!("{name}/scenario.toml");
        let (ok, out, err) = deployer_in(
            dir.path(),
            &["plugin", "test", &wasm, "--scenario", &scenario],
        );
        assert!(ok, "{out}{err}");
        assert_eq!(out.matches("(as expected)").count(), expected, "{out}");
    }
}

/// Inside a deployer checkout (a workspace with the SDK at `plugins/sdk`) the scaffold
/// uses the checkout's SDK by a path relative to itself; a workspace whose
/// `plugins/sdk` is another crate is no checkout.
#[test]
fn a_scaffold_inside_a_checkout_names_its_sdk_by_relative_path() {
    let dir = tempfile::tempdir().unwrap();
    let checkout = dir.path().join("deployer");
    std::fs::create_dir_all(checkout.join("plugins/sdk")).unwrap();
    std::fs::create_dir_all(checkout.join("plugins/mine")).unwrap();
    std::fs::write(checkout.join("Cargo.toml"), "[workspace]\n").unwrap();
    std::fs::write(
        checkout.join("plugins/sdk/Cargo.toml"),
        "[package]\nname = \"deployer-plugin-sdk\"\n",
    )
    .unwrap();

    let (ok, out, err) = deployer_in(
        &checkout.join("plugins/mine"),
        &["plugin", "new", "gate", "--kind", "hook"],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("this deployer checkout's"), "{out}");
    assert_eq!(
        sdk_line(&checkout.join("plugins/mine/gate")),
        r#"deployer-plugin-sdk = { path = "../../sdk", features = ["hook"] }"#
    );
    // --dir from elsewhere: the path is still from the crate, not from where it was run.
    let (ok, out, err) = deployer_in(
        dir.path(),
        &[
            "plugin", "new", "steps", "--kind", "strategy", "--dir", "deployer",
        ],
    );
    assert!(ok, "{out}{err}");
    assert_eq!(
        sdk_line(&checkout.join("steps")),
        r#"deployer-plugin-sdk = { path = "../plugins/sdk", features = ["strategy"] }"#
    );

    std::fs::write(
        checkout.join("plugins/sdk/Cargo.toml"),
        "[package]\nname = \"other-sdk\"\n",
    )
    .unwrap();
    let (ok, out, err) = deployer_in(
        &checkout.join("plugins/mine"),
        &["plugin", "new", "outside", "--kind", "hook"],
    );
    assert!(ok, "{out}{err}");
    assert!(
        sdk_line(&checkout.join("plugins/mine/outside")).contains("version = "),
        "{out}"
    );
}

/// `--sdk-path` (and its old name `--sdk`): an absolute path is written as given, a
/// relative one is taken from the current directory and written from the crate's; a
/// directory that is not the SDK is refused, naming the option and the fix.
#[test]
fn sdk_path_names_the_given_sdk() {
    let dir = tempfile::tempdir().unwrap();
    let sdk = dir.path().join("vendor/deployer-plugin-sdk");
    std::fs::create_dir_all(&sdk).unwrap();
    std::fs::write(
        sdk.join("Cargo.toml"),
        "[package]\nname = \"deployer-plugin-sdk\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("work")).unwrap();

    let absolute = sdk.display().to_string();
    let (ok, out, err) = deployer_in(
        dir.path(),
        &[
            "plugin",
            "new",
            "a",
            "--kind",
            "hook",
            "--sdk-path",
            &absolute,
        ],
    );
    assert!(ok, "{out}{err}");
    assert_eq!(
        sdk_line(&dir.path().join("a")),
        format!(
            "deployer-plugin-sdk = {{ path = {}, features = [\"hook\"] }}",
            toml::Value::String(absolute.clone())
        )
    );

    let (ok, out, err) = deployer_in(
        &dir.path().join("work"),
        &[
            "plugin",
            "new",
            "b",
            "--kind",
            "strategy",
            "--sdk",
            "../vendor/deployer-plugin-sdk",
        ],
    );
    assert!(ok, "{out}{err}");
    assert_eq!(
        sdk_line(&dir.path().join("work/b")),
        r#"deployer-plugin-sdk = { path = "../../vendor/deployer-plugin-sdk", features = ["strategy"] }"#
    );

    let (ok, out, err) = deployer_in(
        dir.path(),
        &["plugin", "new", "c", "--kind", "hook", "--sdk-path", "work"],
    );
    assert!(!ok, "{out}");
    assert!(
        err.contains("--sdk-path work: no deployer-plugin-sdk there"),
        "{err}"
    );
    assert!(
        !dir.path().join("c").exists(),
        "a refused scaffold left files"
    );
}

/// What `plugin new` refuses is bad input (exit 3), as in the other `plugin` subcommands,
/// and leaves nothing behind.
#[test]
fn plugin_new_refuses_bad_input_with_exit_code_3() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("taken")).unwrap();
    for (args, says) in [
        (
            &["plugin", "new", "Notify_Slack", "--kind", "hook"][..],
            "is not a plugin name",
        ),
        (
            &["plugin", "new", "gate", "--kind", "gate"][..],
            "invalid value 'gate' for '--kind",
        ),
        (
            &["plugin", "new", "taken", "--kind", "hook"][..],
            "already exists",
        ),
        (
            &[
                "plugin",
                "new",
                "elsewhere",
                "--kind",
                "hook",
                "--sdk-path",
                "nowhere",
            ][..],
            "no deployer-plugin-sdk there",
        ),
    ] {
        let out = plain().args(args).current_dir(dir.path()).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    for name in ["Notify_Slack", "gate", "elsewhere"] {
        assert!(!dir.path().join(name).exists(), "{name} was left behind");
    }
}
