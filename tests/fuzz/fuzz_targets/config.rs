//! Any text as a config file: either a valid config or an error; an error that is not a TOML
//! syntax error names the key it is about.
#![no_main]

use libfuzzer_sys::fuzz_target;
use walletguard::service::config::{Config, ConfigError};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_toml(text) {
        Ok(cfg) => assert!(cfg.validate().is_ok()),
        Err(ConfigError::Syntax { msg }) => assert!(!msg.is_empty()),
        Err(e) => assert!(e.key().is_some_and(|k| !k.is_empty()), "no key named: {e}"),
    }
});
