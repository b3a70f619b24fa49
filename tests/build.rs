//! Builds the test plugins in `tests/components/` (Spin-style: test components come
//! from source, never checked-in binaries) and records their paths for the suites.

use std::path::PathBuf;

use deployer_plugin_build::{Guest, GuestTarget, build, guest_target_dir};

fn main() {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = dir.parent().unwrap();
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    for watched in ["tests/components", "plugins/examples", "plugins/sdk", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let components = [
        (
            "HOSTILE_STRATEGY",
            Guest::new("hostile-strategy", GuestTarget::Unknown),
        ),
        (
            "HOSTILE_STRATEGY_WASI",
            Guest::new("hostile-strategy", GuestTarget::WasiP2),
        ),
        (
            "HOSTILE_HOOK",
            Guest::new("hostile-hook", GuestTarget::Unknown),
        ),
        (
            "HOSTILE_HOOK_WASI",
            Guest::new("hostile-hook", GuestTarget::WasiP2),
        ),
        (
            "METRICS_HOOK",
            Guest::new("metrics-hook", GuestTarget::Unknown),
        ),
        ("BUSY_HOOK", Guest::new("busy-hook", GuestTarget::Unknown)),
        (
            "FUTURE_STRATEGY",
            Guest::new("future-strategy", GuestTarget::Unknown),
        ),
        ("V01_HOOK", Guest::new("v01-hook", GuestTarget::Unknown)),
    ];
    let guests: Vec<Guest> = components.iter().map(|(_, g)| g.clone()).collect();
    let built = build(
        &dir.join("components/Cargo.toml"),
        &guests,
        &guest_target_dir(&out_dir, "test-components"),
    )
    .unwrap_or_else(|err| panic!("building the test components: {err:#}"));
    // The example plugins are built exactly as users build theirs.
    let examples = [
        (
            "EXAMPLE_WEBHOOK_NOTIFY",
            Guest::new("webhook-notify", GuestTarget::Unknown),
        ),
        (
            "EXAMPLE_DB_MIGRATION",
            Guest::new("db-migration", GuestTarget::Unknown),
        ),
        (
            "EXAMPLE_STEPPED_STRATEGY",
            Guest::new("stepped-strategy", GuestTarget::Unknown),
        ),
    ];
    let example_guests: Vec<Guest> = examples.iter().map(|(_, g)| g.clone()).collect();
    let built_examples = build(
        &root.join("plugins/examples/Cargo.toml"),
        &example_guests,
        &guest_target_dir(&out_dir, "examples"),
    )
    .unwrap_or_else(|err| panic!("building the example plugins: {err:#}"));
    let mut consts = String::new();
    for ((name, _), bytes) in components
        .iter()
        .chain(examples.iter())
        .zip(built.into_iter().chain(built_examples))
    {
        let file = out_dir.join(format!("{}.wasm", name.to_lowercase()));
        std::fs::write(&file, bytes).unwrap();
        consts += &format!(
            "pub const {name}: &str = {:?};\n",
            file.display().to_string()
        );
    }
    std::fs::write(out_dir.join("components.rs"), consts).unwrap();
}
