//! `[log]`: the process's logging, installed once by the binary.

use std::io::IsTerminal;

use serde::{Deserialize, Serialize};

use crate::engine::validate::{invalid, Checked};

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Filter in `RUST_LOG` syntax; `RUST_LOG` wins when set.
    pub level: String,
    /// `auto` (JSON unless stderr is a terminal), `json` or `text`.
    pub format: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: "auto".into(),
        }
    }
}

impl LogConfig {
    /// Checks `format`.
    pub fn validate(&self) -> Checked {
        if !["auto", "json", "text"].contains(&self.format.as_str()) {
            return Err(invalid("log.format", "must be auto, json or text"));
        }
        Ok(())
    }

    /// Installs the process's subscriber at `level` (`RUST_LOG` wins), JSON unless `format`
    /// says otherwise (`auto`: JSON unless stderr is a terminal).
    pub fn install(&self, level: &str) {
        use tracing_subscriber::EnvFilter;
        let filter = EnvFilter::try_from_default_env()
            .or_else(|_| EnvFilter::try_new(level))
            .unwrap_or_else(|_| EnvFilter::new("info"));
        let json = match self.format.as_str() {
            "json" => true,
            "text" => false,
            _ => !std::io::stderr().is_terminal(),
        };
        let b = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        if json {
            b.json().init();
        } else {
            b.init();
        }
    }
}
