//! The `deployer` binary: the command line, `deployer.toml`, and how runs are reported.
//!
//! - [`config`] reads `deployer.toml`, checks it and resolves it once into typed specs.
//! - [`cli`]: the commands, each wiring config, plugins and clients into the engine;
//!   [`cli::report`] turns engine events into output for people and CI.
//! - [`exit`] the exit codes; [`redact`] keeps secrets out of everything printed;
//!   [`output`] writes stdout and stderr without ever panicking on a full or closed stream.
//!
//! What this crate must not do: decide anything about a deployment (that is
//! `deployer-engine`'s), call a cloud API itself (`deployer-targets`), or run plugin
//! code other than through `deployer-plugin-host`. It is the only crate that knows
//! about clap, config files and terminals.

// `println!` and `eprintln!` panic when their stream cannot be written: everything goes
// through `output` instead.
#![deny(clippy::print_stdout, clippy::print_stderr)]

// First, so its macros (`outln!`, `errln!`) are in scope in every module after it.
#[macro_use]
pub mod output;

pub mod cli;
pub mod config;
pub mod exit;
pub mod redact;
