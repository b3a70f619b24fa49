//! Build deployer plugin crates into WebAssembly components.
//!
//! Used by build scripts (built-in strategies, test plugins) and, later, by
//! `deployer plugin build`. A crate is compiled by a nested `cargo build` into its own
//! target directory, then componentized: for `wasm32-unknown-unknown` the core module
//! is wrapped with `wit-component` (no WASI imports at all); `wasm32-wasip2` output is
//! already a component.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The Rust target a guest is compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestTarget {
    /// No WASI: the component imports only the deployer capabilities it uses.
    Unknown,
    /// WASI preview 2: the host links WASI with an empty context.
    WasiP2,
}

impl GuestTarget {
    pub fn triple(self) -> &'static str {
        match self {
            GuestTarget::Unknown => "wasm32-unknown-unknown",
            GuestTarget::WasiP2 => "wasm32-wasip2",
        }
    }
}

/// One crate to build.
#[derive(Clone, Debug)]
pub struct Guest {
    /// The cargo package name, e.g. `deployer-strategy-canary`.
    pub package: String,
    pub target: GuestTarget,
}

impl Guest {
    pub fn new(package: &str, target: GuestTarget) -> Self {
        Guest {
            package: package.to_string(),
            target,
        }
    }

    /// File name of the compiled artifact (`deployer_strategy_canary.wasm`).
    fn artifact(&self) -> String {
        format!("{}.wasm", self.package.replace('-', "_"))
    }
}

/// Build `guests` of the workspace at `manifest` with the `guest` profile into
/// `target_dir`, and return the component bytes of each, in order.
///
/// Each guest is a separate cargo invocation so that SDK features (`strategy`, `hook`)
/// are never unified across crates: a component must carry exactly one world.
///
/// # Errors
/// When cargo fails (the message says how to add a missing target) or a module cannot
/// be componentized.
pub fn build(manifest: &Path, guests: &[Guest], target_dir: &Path) -> Result<Vec<Vec<u8>>> {
    guests
        .iter()
        .map(|guest| {
            cargo_build(manifest, guest, target_dir)?;
            let path = target_dir
                .join(guest.target.triple())
                .join("guest")
                .join(guest.artifact());
            let bytes = std::fs::read(&path)
                .with_context(|| format!("reading the built guest {}", path.display()))?;
            match guest.target {
                GuestTarget::Unknown => componentize(&bytes)
                    .with_context(|| format!("componentizing {}", guest.package)),
                GuestTarget::WasiP2 => Ok(bytes),
            }
        })
        .collect()
}

fn cargo_build(manifest: &Path, guest: &Guest, target_dir: &Path) -> Result<()> {
    // Normally the outer cargo's own toolchain; DEPLOYER_GUEST_TOOLCHAIN picks another
    // (the fuzz build runs on nightly, which has no wasm targets installed).
    let mut cmd = match std::env::var("DEPLOYER_GUEST_TOOLCHAIN") {
        Ok(toolchain) if !toolchain.is_empty() => {
            let mut cmd = Command::new("cargo");
            cmd.arg(format!("+{toolchain}"))
                .env_remove("RUSTUP_TOOLCHAIN");
            cmd
        }
        _ => Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())),
    };
    cmd.arg("build")
        .arg("--quiet")
        .arg("--manifest-path")
        .arg(manifest)
        .args(["--package", &guest.package])
        .args(["--target", guest.target.triple()])
        .args(["--profile", "guest"])
        .arg("--target-dir")
        .arg(target_dir);
    scrub_outer_cargo_env(&mut cmd);
    let output = cmd
        .output()
        .with_context(|| format!("running cargo to build {}", guest.package))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint = if stderr.contains("may not be installed")
            || stderr.contains("can't find crate for `core`")
        {
            format!(
                "\nhint: install the target with `rustup target add {}`",
                guest.target.triple()
            )
        } else {
            String::new()
        };
        bail!(
            "building {} for {} failed:\n{stderr}{hint}",
            guest.package,
            guest.target.triple()
        );
    }
    Ok(())
}

/// A build script runs inside an outer cargo whose environment describes *its* target
/// and flags (coverage instrumentation, clippy as rustc wrapper). None of that applies
/// to a wasm guest.
fn scrub_outer_cargo_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let keep = matches!(key, "CARGO_HOME" | "CARGO_MAKEFLAGS")
            || key.starts_with("CARGO_NET_")
            || key.starts_with("CARGO_HTTP_")
            || key.starts_with("CARGO_REGISTRIES_");
        let outer = key.starts_with("CARGO_")
            || key.starts_with("RUSTC")
            || key.starts_with("RUSTFLAGS")
            || key.starts_with("RUSTDOC")
            || matches!(
                key,
                "TARGET" | "HOST" | "OUT_DIR" | "OPT_LEVEL" | "PROFILE" | "DEBUG" | "NUM_JOBS"
            );
        if outer && !keep {
            cmd.env_remove(key);
        }
    }
}

/// Wrap a core module built with wit-bindgen (which embeds its WIT world in a custom
/// section) into a component.
///
/// # Errors
/// When the module carries no or inconsistent component type information.
pub fn componentize(core: &[u8]) -> Result<Vec<u8>> {
    wit_component::ComponentEncoder::default()
        .module(core)?
        .validate(true)
        .encode()
}

/// Where guests of one workspace are built: a sibling of cargo's own profile folders,
/// found from a build script's `OUT_DIR` (`<target>/<profile>/build/<pkg>/out`).
pub fn guest_target_dir(out_dir: &Path, name: &str) -> PathBuf {
    out_dir
        .ancestors()
        .nth(4)
        .unwrap_or(out_dir)
        .join("wasm-guests")
        .join(name)
}
