//! Per-call resource limits and the store's resource limiter.

use std::time::Duration;

use wasmtime::ResourceLimiter;

/// Resource limits of one plugin call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock bound of one call, host capability calls included.
    pub timeout: Duration,
    /// Total linear memory of all of the component's memories.
    pub memory_bytes: usize,
    /// Core instances (componentize-py alone needs more than 10).
    pub instances: usize,
    /// Elements across tables.
    pub table_elements: usize,
}

impl Limits {
    /// Defaults for strategies: pure functions that answer in microseconds.
    pub fn strategy() -> Self {
        Limits {
            timeout: Duration::from_secs(1),
            memory_bytes: 64 << 20,
            instances: 100,
            table_elements: 100_000,
        }
    }

    /// Defaults for hooks, which may wait on HTTP or metrics.
    pub fn hook() -> Self {
        Limits {
            timeout: Duration::from_secs(30),
            memory_bytes: 128 << 20,
            ..Limits::strategy()
        }
    }
}

/// Enforces [`Limits`] inside a store and remembers whether memory was refused, so a
/// trap can be reported as "memory limit" rather than a bare `unreachable`.
pub(crate) struct Limiter {
    memory_cap: usize,
    memory_used: usize,
    instances: usize,
    table_elements: usize,
    pub(crate) memory_refused: bool,
}

impl Limiter {
    pub(crate) fn new(limits: &Limits) -> Self {
        Limiter {
            memory_cap: limits.memory_bytes,
            memory_used: 0,
            instances: limits.instances,
            table_elements: limits.table_elements,
            memory_refused: false,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.memory_used - current.min(self.memory_used) + desired;
        if total > self.memory_cap {
            self.memory_refused = true;
            // An error (not `false`) traps at once: a guest allocator that ignores a
            // failed grow could otherwise spin or corrupt itself.
            return Err(wasmtime::format_err!(
                "memory limit of {} bytes reached",
                self.memory_cap
            ));
        }
        self.memory_used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.table_elements)
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        self.instances
    }

    fn memories(&self) -> usize {
        self.instances
    }
}

/// Longest text the host keeps from a plugin (log lines, gate details, abort reasons,
/// error messages): a plugin cannot flood logs, journals or CI output.
pub const MAX_TEXT_BYTES: usize = 4096;

/// `text` cut to [`MAX_TEXT_BYTES`] on a character boundary, marked when cut.
/// Text a plugin hands back for people to read (gate names and details, abort reasons,
/// error messages): cut to size, and escaped onto one line so that wherever it is
/// printed it cannot forge a line of deployer's own or a CI workflow command.
pub fn clip_line(text: String) -> String {
    match deployer_engine::redact::printable(&clip(text)) {
        std::borrow::Cow::Borrowed(same) => same.to_string(),
        std::borrow::Cow::Owned(escaped) => escaped,
    }
}

pub fn clip(mut text: String) -> String {
    if text.len() > MAX_TEXT_BYTES {
        let mut cut = MAX_TEXT_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let dropped = text.len() - cut;
        text.truncate(cut);
        text.push_str(&format!("… [{dropped} more bytes cut]"));
    }
    text
}

/// At most this many parameter problems are kept from one `validate` call.
pub const MAX_PARAM_ERRORS: usize = 100;

/// A plugin's `info`, each field cut and escaped like any text it hands back.
pub fn plugin_info(info: deployer_contract::PluginInfo) -> deployer_contract::PluginInfo {
    deployer_contract::PluginInfo {
        name: clip_line(info.name),
        version: clip_line(info.version),
        description: clip_line(info.description),
    }
}

/// A plugin's parameter problems, at most [`MAX_PARAM_ERRORS`], each cut and escaped.
pub fn param_errors(
    errors: impl IntoIterator<Item = deployer_contract::ParamError>,
) -> Vec<deployer_contract::ParamError> {
    errors
        .into_iter()
        .take(MAX_PARAM_ERRORS)
        .map(|e| deployer_contract::ParamError {
            field: clip_line(e.field),
            message: clip_line(e.message),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_plugin_says_about_its_parameters_is_bounded_and_on_one_line() {
        let flood = (0..10_000).map(|i| deployer_contract::ParamError {
            field: format!("steps[{i}]\n::error::x"),
            message: "m".repeat(MAX_TEXT_BYTES * 2),
        });
        let kept = param_errors(flood);
        assert_eq!(kept.len(), MAX_PARAM_ERRORS);
        assert!(kept.iter().all(|e| !e.field.contains('\n')
            && e.field.contains("\\n::error::")
            && e.message.len() < MAX_TEXT_BYTES + 64));
        let info = plugin_info(deployer_contract::PluginInfo {
            name: "x\x1b[2J".into(),
            version: "1".into(),
            description: "d\r\nfake".into(),
        });
        assert_eq!(info.name, "x\\u{1b}[2J");
        assert_eq!(info.description, "d\\r\\nfake");
    }
}
