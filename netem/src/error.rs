//! Error types of the netem crate.

use std::path::PathBuf;

use thiserror::Error;

/// A value that does not parse as the unit it should have.
#[derive(Debug, Clone, Error, PartialEq)]
#[error("\"{input}\": {reason}")]
pub struct UnitError {
    pub input: String,
    pub reason: String,
}

impl UnitError {
    pub fn new(input: &str, reason: &str) -> Self {
        UnitError {
            input: input.trim().to_string(),
            reason: reason.to_string(),
        }
    }
}

/// Anything wrong with an impairment profile: its file, its syntax or its values.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// A value out of range or inconsistent with another; `field` is the dotted
    /// path of the offending field, e.g. `loss.p`.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },

    /// TOML syntax or a type error; the message carries line, column and field.
    #[error("{0}")]
    Toml(String),

    /// A netem one-line profile that `tc` would not accept (or Glass refuses).
    #[error("netem line, at \"{token}\": {reason}")]
    NetemLine { token: String, reason: String },

    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },

    /// A field error with the file and line it came from.
    /// (The inner error is in the message, not a `source`: `{:#}` would
    /// print it twice.)
    #[error("{origin}, line {line}: {error}")]
    Located {
        origin: String,
        line: usize,
        error: Box<ConfigError>,
    },

    /// The same error, with the file it came from.
    #[error("{path}: {error}")]
    InFile {
        path: String,
        error: Box<ConfigError>,
    },

    #[error("\"{name}\" is not a preset, a file, or a netem line (presets: {presets})")]
    UnknownProfile {
        name: String,
        /// The preset names, for the message.
        presets: String,
    },
}

impl ConfigError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Prefixes the field path with the enclosing table, e.g. `uplink.` + `loss.p`.
    pub fn within(self, prefix: &str) -> Self {
        match self {
            ConfigError::Invalid { field, reason } => ConfigError::Invalid {
                field: if field.is_empty() {
                    prefix.to_string()
                } else {
                    format!("{prefix}.{field}")
                },
                reason,
            },
            other => other,
        }
    }

    pub fn in_file(self, path: impl Into<String>) -> Self {
        ConfigError::InFile {
            path: path.into(),
            error: Box::new(self),
        }
    }
}
