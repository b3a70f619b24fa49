//! Loading a plugin: every check that can refuse it runs here, before any guest code.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

use super::{CONTRACT_VERSION, Grants, Limits, PluginError, PluginHost, builtin};
use deployer_engine::files::Kind;

/// Where a plugin's component comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PluginSource {
    /// A built-in strategy embedded in the binary.
    Builtin(String),
    /// A component file, with the sha256 digest config requires for it.
    File {
        name: String,
        path: PathBuf,
        sha256: String,
    },
}

impl PluginSource {
    pub fn name(&self) -> &str {
        match self {
            PluginSource::Builtin(name) | PluginSource::File { name, .. } => name,
        }
    }
}

/// Which world a plugin implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PluginKind {
    Strategy,
    Hook,
}

impl PluginKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Strategy => "strategy",
            PluginKind::Hook => "hook",
        }
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The contract version a component was built against, among those the host runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Contract {
    /// 0.1.x: as 0.2 plus `actions`, which a hook may not import.
    V0_1,
    /// 0.2.x: as 0.3 without the `await-approval` step.
    V0_2,
    /// 0.3.x: the current version, [`CONTRACT_VERSION`].
    V0_3,
}

impl Contract {
    /// The version a component exporting `version` (`0.2.0`, `0.2.3`) runs as; `None`
    /// when this host runs no compatible version (semver for 0.x: same minor).
    pub fn of(version: &str) -> Option<Contract> {
        let parts: Vec<u64> = version
            .split('.')
            .map(|p| p.parse().unwrap_or(u64::MAX))
            .collect();
        match parts[..] {
            [0, 1, _] => Some(Contract::V0_1),
            [0, 2, _] => Some(Contract::V0_2),
            [0, 3, _] => Some(Contract::V0_3),
            _ => None,
        }
    }

    /// The version the host links for it (`0.2.0`).
    pub fn version(self) -> &'static str {
        match self {
            Contract::V0_1 => deployer_contract::EARLIER_CONTRACT_VERSIONS[0],
            Contract::V0_2 => deployer_contract::EARLIER_CONTRACT_VERSIONS[1],
            Contract::V0_3 => CONTRACT_VERSION,
        }
    }
}

/// A plugin that passed every load check.
pub(crate) struct Loaded {
    pub(crate) name: Arc<str>,
    pub(crate) digest: String,
    pub(crate) contract: Contract,
    pub(crate) component: Component,
    pub(crate) limits: Limits,
    pub(crate) grants: Arc<Grants>,
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl PluginHost {
    pub(crate) fn load(
        &self,
        source: &PluginSource,
        kind: PluginKind,
        limits: Limits,
        grants: Grants,
    ) -> Result<Loaded, PluginError> {
        let name = source.name().to_string();
        let (bytes, digest) = match source {
            PluginSource::Builtin(builtin_name) => {
                let bytes = builtin::get_kind(builtin_name, kind).ok_or_else(|| {
                    PluginError::WrongWorld {
                        name: name.clone(),
                        expected: "built-in",
                        found: no_builtin(builtin_name, kind),
                    }
                })?;
                (std::borrow::Cow::Borrowed(bytes), sha256_hex(bytes))
            }
            PluginSource::File { path, sha256, .. } => {
                let expected =
                    normalize_digest(sha256).map_err(|reason| PluginError::BadDigest {
                        name: name.clone(),
                        path: path.clone(),
                        reason,
                    })?;
                let bytes = deployer_engine::files::read(path, Kind::Plugin).map_err(|err| {
                    PluginError::Read {
                        name: name.clone(),
                        path: path.clone(),
                        source: err.into_io(),
                    }
                })?;
                let actual = sha256_hex(&bytes);
                if actual != expected {
                    return Err(PluginError::DigestMismatch {
                        name,
                        path: path.clone(),
                        expected,
                        actual,
                    });
                }
                (std::borrow::Cow::Owned(bytes), actual)
            }
        };
        check_is_component(&name, &bytes)?;
        let precompiled = match source {
            PluginSource::Builtin(builtin_name) => builtin::compiled(builtin_name, kind, &digest),
            PluginSource::File { .. } => None,
        };
        let component =
            self.compile(&digest, &bytes, precompiled)
                .map_err(|err| PluginError::Invalid {
                    name: name.clone(),
                    reason: format!("{err:#}"),
                })?;
        let contract = check_world(self, &name, &component, kind)?;
        check_imports(self, &name, &component, kind, contract, &grants)?;
        Ok(Loaded {
            name: name.into(),
            digest,
            contract,
            component,
            limits,
            grants: Arc::new(grants),
        })
    }
}

/// Why there is no built-in `name` of `kind`: the ones there are, and whether `name` is
/// a built-in of the other kind.
fn no_builtin(name: &str, kind: PluginKind) -> String {
    let other = match kind {
        PluginKind::Strategy => PluginKind::Hook,
        PluginKind::Hook => PluginKind::Strategy,
    };
    let names = builtin::names_of(kind).collect::<Vec<_>>().join(", ");
    let kinds = match kind {
        PluginKind::Strategy => "strategies",
        PluginKind::Hook => "hooks",
    };
    let mut why = format!("there is no built-in {kind} `{name}` (built-in {kinds}: {names})");
    if builtin::get_kind(name, other).is_some() {
        why += &format!("; `{name}` is a built-in {other}: use it where a {other} is expected");
    }
    why
}

fn normalize_digest(text: &str) -> Result<String, String> {
    let digest = text
        .trim()
        .strip_prefix("sha256:")
        .unwrap_or(text.trim())
        .to_ascii_lowercase();
    if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("`{text}` is not 64 hex digits"));
    }
    Ok(digest)
}

pub(crate) fn check_is_component(name: &str, bytes: &[u8]) -> Result<(), PluginError> {
    let refuse = |reason: &str| PluginError::NotAComponent {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    if bytes.is_empty() {
        return Err(refuse("the file is empty; build the plugin again"));
    }
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(refuse(
            "the file does not start with the WebAssembly magic bytes",
        ));
    }
    if wasmtime::wasmparser::Parser::is_core_wasm(bytes) {
        return Err(refuse(
            "it is a core WebAssembly module; turn it into a component with \
             `wasm-tools component new` (or build it with `deployer plugin build`)",
        ));
    }
    if !wasmtime::wasmparser::Parser::is_component(bytes) {
        return Err(refuse("unknown WebAssembly encoding version"));
    }
    Ok(())
}

/// `deployer:plugin/strategy@0.1.0` → (`strategy`, `0.1.0`).
pub(crate) fn split_contract_name(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix("deployer:plugin/")?;
    Some(rest.split_once('@').unwrap_or((rest, "")))
}

fn check_world(
    host: &PluginHost,
    name: &str,
    component: &Component,
    kind: PluginKind,
) -> Result<Contract, PluginError> {
    let ty = component.component_type();
    let exports: Vec<String> = ty
        .exports(host.engine())
        .map(|(n, _)| n.to_string())
        .collect();
    let wrong = |found: String| PluginError::WrongWorld {
        name: name.to_string(),
        expected: kind.as_str(),
        found,
    };
    let mut other_kind = None;
    for export in &exports {
        let Some((interface, version)) = split_contract_name(export) else {
            continue;
        };
        if interface == kind.as_str() {
            return Contract::of(version).ok_or_else(|| {
                let earlier = deployer_contract::EARLIER_CONTRACT_VERSIONS.join(" and ");
                wrong(format!(
                    "it was built against deployer:plugin@{version}, but this deployer implements \
                     deployer:plugin@{CONTRACT_VERSION} (and still runs components built against \
                     {earlier}); rebuild the plugin with the {CONTRACT_VERSION} SDK (`deployer \
                     plugin build`), or use a deployer that supports {version}"
                ))
            });
        }
        if interface == "strategy" || interface == "hook" {
            other_kind = Some(interface.to_string());
        }
    }
    Err(wrong(match other_kind {
        Some(other) => format!(
            "it is a {other} plugin (it exports deployer:plugin/{other}); \
             use it where a {other} is expected"
        ),
        None if exports.is_empty() => "it exports nothing".to_string(),
        None => format!(
            "it exports {} but not deployer:plugin/{kind}",
            exports.join(", ")
        ),
    }))
}

fn check_imports(
    host: &PluginHost,
    name: &str,
    component: &Component,
    kind: PluginKind,
    contract: Contract,
    grants: &Grants,
) -> Result<(), PluginError> {
    let ty = component.component_type();
    for (import, item) in ty.imports(host.engine()) {
        if kind == PluginKind::Strategy
            && (import.starts_with("wasi:clocks/") || import.starts_with("wasi:random/"))
        {
            // Resume, replay and `plan` rest on a strategy giving the same step for
            // the same state: time and randomness would make it a different function
            // on every call.
            return Err(PluginError::NotGranted {
                name: name.to_string(),
                capability: import.to_string(),
                fix: "strategies must be deterministic, so they get no clock or randomness: \
                      build for wasm32-unknown-unknown (no WASI), or keep time and random \
                      numbers out of the strategy (durations arrive in its parameters, what \
                      happened so far in its rollout state)"
                    .to_string(),
            });
        }
        if import.starts_with("wasi:") {
            // Linked with an empty context: no env, files, sockets or stdio.
            continue;
        }
        let Some((capability, _)) = split_contract_name(import) else {
            return Err(PluginError::WrongWorld {
                name: name.to_string(),
                expected: kind.as_str(),
                found: format!("it imports `{import}`, which deployer does not provide"),
            });
        };
        if !matches!(item.ty, ComponentItem::ComponentInstance(_)) || capability == "types" {
            continue;
        }
        if capability == "actions" && contract == Contract::V0_1 {
            // 0.2.0 removed `actions`: no deployer ever provided it (every call failed),
            // and linking it now would leave a hook's calls dangling.
            return Err(PluginError::WrongWorld {
                name: name.to_string(),
                expected: kind.as_str(),
                found: format!(
                    "it was built against deployer:plugin@0.1.0 and imports `{import}`, which \
                     0.2.0 removed (no deployer ever provided it: every call failed); remove \
                     its use and rebuild the plugin with the {CONTRACT_VERSION} SDK (`deployer \
                     plugin build`). 0.1 plugins that do not use `actions` run unchanged"
                ),
            });
        }
        if kind == PluginKind::Strategy && capability != "log" {
            return Err(PluginError::NotGranted {
                name: name.to_string(),
                capability: capability.to_string(),
                fix: "strategies may import only `log`: they must be deterministic, so \
                      anything else they need arrives in their rollout state"
                    .to_string(),
            });
        }
        if let Err(line) = grants.check(capability) {
            return Err(PluginError::NotGranted {
                name: name.to_string(),
                capability: capability.to_string(),
                fix: if line.is_empty() {
                    format!("`{capability}` is not a deployer capability")
                } else {
                    format!("add `{line}` under [plugins.{name}] in deployer.toml")
                },
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_versions_follow_semver_for_0x() {
        assert_eq!(Contract::of("0.3.0"), Some(Contract::V0_3));
        assert_eq!(Contract::of("0.3.7"), Some(Contract::V0_3));
        assert_eq!(Contract::of("0.2.0"), Some(Contract::V0_2));
        assert_eq!(Contract::of("0.1.4"), Some(Contract::V0_1));
        assert_eq!(Contract::of("0.4.0"), None);
        assert_eq!(Contract::of("1.3.0"), None);
        assert_eq!(Contract::of("0.3"), None);
        assert_eq!(Contract::of(""), None);
        assert_eq!(Contract::V0_3.version(), CONTRACT_VERSION);
        assert_eq!(Contract::V0_2.version(), "0.2.0");
        assert_eq!(Contract::V0_1.version(), "0.1.0");
    }

    #[test]
    fn digests_are_normalized_and_checked() {
        let hex = "AB".repeat(32);
        assert_eq!(
            normalize_digest(&format!("sha256:{hex}")).unwrap(),
            "ab".repeat(32)
        );
        assert!(normalize_digest("abc").is_err());
        assert!(normalize_digest(&"zz".repeat(32)).is_err());
    }
}
