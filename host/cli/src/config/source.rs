//! Where things are in `deployer.toml`: every error names the file, the line and
//! column, the field, and what to do about it.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line and column, when known.
    pub position: Option<(usize, usize)>,
    /// Dotted path of the field, e.g. `services.web.strategies.canary.steps[1].weight`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The path and field may hold anything (`--config $'a\nb'`): one line each.
        let file = self.file.display().to_string();
        write!(f, "{}", deployer_engine::redact::printable(&file))?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        if self.field.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(
                f,
                ": {}: {}",
                deployer_engine::redact::printable(&self.field),
                self.message
            )
        }
    }
}

/// All problems found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A segment of a field path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// Parse `steps[1].weight` into segments.
pub fn parse_field_path(path: &str) -> Vec<Segment> {
    let mut segments = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            if open > 0 {
                segments.push(Segment::Key(rest[..open].to_string()));
            }
            rest = &rest[open..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let close = stripped.find(']').unwrap_or(stripped.len());
                if let Ok(index) = stripped[..close].parse() {
                    segments.push(Segment::Index(index));
                }
                rest = stripped.get(close + 1..).unwrap_or("");
            }
        } else {
            segments.push(Segment::Key(rest.to_string()));
        }
    }
    segments
}

/// The dotted path of the key or value at byte `offset` of `source`, when the text is
/// valid TOML (type errors from serde carry only a span).
pub fn field_at(source: &str, offset: usize) -> Option<String> {
    fn in_table(table: &DeTable<'_>, offset: usize) -> Option<String> {
        for (key, value) in table.iter() {
            let name = key.get_ref().to_string();
            if key.span().contains(&offset) {
                return Some(name);
            }
            if let Some(inner) = in_value(value.get_ref(), offset) {
                return Some(if inner.starts_with('[') {
                    format!("{name}{inner}")
                } else {
                    format!("{name}.{inner}")
                });
            }
            if value.span().contains(&offset) {
                return Some(name);
            }
        }
        None
    }
    fn in_value(value: &DeValue<'_>, offset: usize) -> Option<String> {
        match value {
            // Table spans may cover only their header: search every table.
            DeValue::Table(table) => in_table(table, offset),
            DeValue::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, item)| match in_value(item.get_ref(), offset) {
                    Some(inner) if inner.starts_with('[') => Some(format!("[{i}]{inner}")),
                    Some(inner) => Some(format!("[{i}].{inner}")),
                    None => item.span().contains(&offset).then(|| format!("[{i}]")),
                }),
            _ => None,
        }
    }
    let doc = DeTable::parse(source).ok()?;
    in_table(doc.get_ref(), offset)
}

/// 1-based line and column of byte `offset` in `source`.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset.min(source.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// A config file's text, to position errors in.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
}

impl Source {
    pub fn new(path: &Path, text: String) -> Self {
        Source {
            path: path.to_path_buf(),
            text,
        }
    }

    pub fn error_at(
        &self,
        span: Option<Range<usize>>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.path.clone(),
            position: span.map(|s| line_col(&self.text, s.start)),
            field: field.into(),
            message: message.into(),
        }
    }

    /// An error about the field at dotted `path`, positioned at that field when it
    /// exists in the file (else at its closest existing parent).
    pub fn error_at_field(&self, path: &str, message: impl Into<String>) -> ConfigError {
        self.error_at(self.locate(path), path, message)
    }

    /// Byte span of the value at dotted `path` (or its nearest existing ancestor).
    pub fn locate(&self, path: &str) -> Option<Range<usize>> {
        let doc = DeTable::parse(&self.text).ok()?;
        let mut span = None;
        let mut current: Option<&DeValue<'_>> = None;
        let root = doc.get_ref();
        for segment in parse_field_path(path) {
            let next = match (segment, current) {
                (Segment::Key(key), None) => root.get(key.as_str()),
                (Segment::Key(key), Some(DeValue::Table(table))) => table.get(key.as_str()),
                (Segment::Index(i), Some(DeValue::Array(array))) => array.get(i),
                _ => None,
            };
            match next {
                Some(value) => {
                    span = Some(value.span());
                    current = Some(value.get_ref());
                }
                None => break,
            }
        }
        span
    }

    /// The error for text serde could not read, positioned where the parser stopped.
    ///
    /// Inside a tagged table (`[services.NAME.target]`, a gate) serde reports a bad
    /// value at the table, not the key, and names the Rust type it wanted: the key is
    /// found by the value the message quotes, and the type said in words.
    pub fn parse_error(&self, err: &toml::de::Error) -> ConfigError {
        let mut field = err
            .span()
            .and_then(|span| field_at(&self.text, span.start))
            .unwrap_or_default();
        let mut position = err.span().map(|span| line_col(&self.text, span.start));
        let message = err.message().trim().to_string();
        let written = |text: &str| match quoted_value(&message) {
            Some(literal) => text == literal,
            // No literal quoted: an array or an inline table where a value belongs.
            None if message.starts_with("invalid type: sequence") => text.starts_with('['),
            None if message.starts_with("invalid type: map") => text.starts_with('{'),
            None => false,
        };
        if let Some((key, span)) = self.key_holding(&field, &written) {
            field = if field.is_empty() {
                key
            } else {
                format!("{field}.{key}")
            };
            position = Some(line_col(&self.text, span.start));
        }
        ConfigError {
            file: self.path.clone(),
            position,
            field,
            message: in_words(&message),
        }
    }

    /// The one key of the table at `path` whose value, as written, `written` accepts,
    /// and the value's span.
    fn key_holding(
        &self,
        path: &str,
        written: &dyn Fn(&str) -> bool,
    ) -> Option<(String, Range<usize>)> {
        let doc = DeTable::parse(&self.text).ok()?;
        let mut table = doc.get_ref();
        let mut current: Option<&DeValue<'_>> = None;
        for segment in parse_field_path(path) {
            current = match (segment, current) {
                (Segment::Key(key), None) => table.get(key.as_str()).map(|v| v.get_ref()),
                (Segment::Key(key), Some(DeValue::Table(t))) => {
                    t.get(key.as_str()).map(|v| v.get_ref())
                }
                (Segment::Index(i), Some(DeValue::Array(a))) => a.get(i).map(|v| v.get_ref()),
                _ => None,
            };
            current?;
        }
        if let Some(DeValue::Table(t)) = current {
            table = t;
        } else if current.is_some() {
            return None;
        }
        let mut found = table.iter().filter(|(_, value)| {
            self.text
                .get(value.span())
                .is_some_and(|text| written(text.trim()))
        });
        let (key, value) = found.next()?;
        // Two keys with the same value: say the table, not a guess.
        found
            .next()
            .is_none()
            .then(|| (key.get_ref().to_string(), value.span()))
    }
}

/// The value a serde message quotes: `` integer `-1` `` or `string "4"`.
fn quoted_value(message: &str) -> Option<&str> {
    if let Some(rest) = message.split_once('`').map(|(_, r)| r) {
        return rest.split_once('`').map(|(v, _)| v);
    }
    let (_, rest) = message.split_once("string \"")?;
    let end = rest.find("\", expected")?;
    // The literal as written in the file, quotes included.
    message.get(message.len() - rest.len() - 1..message.len() - rest.len() + end + 1)
}

/// A serde message with the Rust types it names said in words.
fn in_words(message: &str) -> String {
    [
        ("expected u8", "expected a whole number from 0 to 255"),
        ("expected u16", "expected a whole number from 0 to 65535"),
        (
            "expected u32",
            "expected a whole number from 0 to 4294967295",
        ),
        ("expected u64", "expected a whole number from 0 up"),
        ("expected i64", "expected a whole number"),
        ("expected f64", "expected a number"),
    ]
    .iter()
    .fold(message.to_string(), |text, (rust, words)| {
        text.replace(rust, words)
    })
}
