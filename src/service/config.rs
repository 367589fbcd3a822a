//! Typed, validated configuration; mirrors `config/walletguard.toml` key for key.
//!
//! Loading order: built-in defaults ← TOML files, in the order given (`--config base.toml
//! --config overlay.toml`: tables merge key by key, a later file's value wins, arrays such as
//! `subscriptions` are replaced whole) ← `WALLETGUARD_*` environment variables
//! (`WALLETGUARD_DECISION__FREEZE=0.9` sets `decision.freeze`; `__` separates levels because
//! keys themselves contain `_`). Every struct is `deny_unknown_fields`, and every error names
//! the key at fault and, with several files, the file that set it last.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::baseline::{BaselineConfig, PriorConfig};
use crate::engine::decision::DecisionConfig;
use crate::engine::detect::DetectorsConfig;
use crate::engine::pipeline::{EngineConfig, GeneralConfig};
use crate::engine::validate::Invalid;
use crate::service::channels::{default_subscriptions, Subscription};
use crate::service::http::HttpConfig;
use crate::service::kafka::settings::KafkaConfig;
use crate::service::logging::LogConfig;

/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "WALLETGUARD_";
/// Environment variables with the prefix that are not config keys.
pub const ENV_RESERVED: &[&str] = &["WALLETGUARD_CONFIG", "WALLETGUARD_LOG"];

/// Why a configuration could not be loaded. Each variant names the key (dotted path) at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Io {
        /// The path given.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config is not valid TOML: {msg}")]
    Syntax {
        /// toml's message, with line and column.
        msg: String,
    },
    /// A key is unknown or has the wrong type.
    #[error("config key `{key}`: {msg}")]
    Type {
        /// Dotted path of the key.
        key: String,
        /// What was wrong.
        msg: String,
    },
    /// A value breaks a rule (range, ordering, sum).
    #[error("config key `{key}`: {msg}")]
    Invalid {
        /// Dotted path of the key.
        key: String,
        /// The rule that was broken.
        msg: String,
    },
    /// An environment override does not name a key or does not parse.
    #[error("environment variable {var}: {msg}")]
    Env {
        /// The variable.
        var: String,
        /// What was wrong.
        msg: String,
    },
    /// An error in one of several layered files: the file that set the key last (or the only
    /// file that holds the bad text).
    #[error("{file}: {inner}")]
    InFile {
        /// The file, as given on the command line.
        file: String,
        /// The error.
        inner: Box<ConfigError>,
    },
}

impl ConfigError {
    /// The key at fault, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Type { key, .. } | ConfigError::Invalid { key, .. } => Some(key),
            ConfigError::InFile { inner, .. } => inner.key(),
            _ => None,
        }
    }

    /// The file at fault, when the config was layered from files.
    pub fn file(&self) -> Option<&str> {
        match self {
            ConfigError::InFile { file, .. } => Some(file),
            ConfigError::Io { path, .. } => Some(path),
            _ => None,
        }
    }
}

impl From<Config> for EngineConfig {
    fn from(c: Config) -> EngineConfig {
        EngineConfig {
            general: c.general,
            baseline: c.baseline,
            prior: c.prior,
            detectors: c.detectors,
            decision: c.decision,
            feedback: c.feedback,
            notify: c.notify,
        }
    }
}

/// One config file of a layered load: its name for errors and its TOML text.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The name errors give it (the path as given).
    pub name: String,
    /// The TOML text.
    pub text: String,
}

impl Layer {
    /// Reads `path`.
    pub fn read(path: &Path) -> Result<Layer, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Layer {
            name: path.display().to_string(),
            text,
        })
    }
}

/// True when the dotted `key` (as errors name it: `a.b`, `subscriptions[0].name`) is present
/// in `table`.
fn defines(table: &toml::Table, key: &str) -> bool {
    let mut here: Option<&toml::Value> = None;
    for seg in key.split('.') {
        let (name, idx) = match seg.find('[') {
            Some(i) => (&seg[..i], &seg[i..]),
            None => (seg, ""),
        };
        let next = match here {
            None => table.get(name),
            Some(toml::Value::Table(t)) => t.get(name),
            Some(_) => None,
        };
        let Some(mut v) = next else { return false };
        for i in idx
            .split(['[', ']'])
            .filter(|s| !s.is_empty())
            .map(str::parse::<usize>)
        {
            match (v, i) {
                (toml::Value::Array(a), Ok(i)) if i < a.len() => v = &a[i],
                _ => return false,
            }
        }
        here = Some(v);
    }
    here.is_some()
}

impl From<Invalid> for ConfigError {
    fn from(e: Invalid) -> ConfigError {
        ConfigError::Invalid {
            key: e.key,
            msg: e.msg,
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Currency, time zone and duplicate handling.
    pub general: GeneralConfig,
    /// Per-user baseline sizes and decay.
    pub baseline: BaselineConfig,
    /// Population prior for users with little history.
    pub prior: PriorConfig,
    /// Detector weights and parameters.
    pub detectors: DetectorsConfig,
    /// Score → action mapping and command rules.
    pub decision: DecisionConfig,
    /// What step-up results, verdicts and unfreezes do.
    pub feedback: crate::engine::feedback::FeedbackConfig,
    /// Owner notifications (`notify_user`).
    pub notify: crate::engine::notify::NotifyConfig,
    /// A candidate config scored beside the live one, acting on nothing.
    pub shadow: crate::service::shadow::ShadowConfig,
    /// Logging.
    pub log: LogConfig,
    /// Brokers, topics and delivery of `run` (restart to change).
    pub kafka: KafkaConfig,
    /// Metrics and health endpoint.
    pub http: HttpConfig,
    /// Further alert topics, by severity, action and reason code.
    #[serde(default = "default_subscriptions")]
    pub subscriptions: Vec<Subscription>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            general: Default::default(),
            baseline: Default::default(),
            prior: Default::default(),
            detectors: Default::default(),
            decision: Default::default(),
            feedback: Default::default(),
            notify: Default::default(),
            shadow: Default::default(),
            log: Default::default(),
            kafka: Default::default(),
            http: Default::default(),
            subscriptions: default_subscriptions(),
        }
    }
}

impl Config {
    /// Loads `path` (or only defaults when `None`), applies `WALLETGUARD_*` overrides from the
    /// process environment, and validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let paths: Vec<PathBuf> = path.map(Path::to_path_buf).into_iter().collect();
        Config::load_layers(&paths)
    }

    /// Loads `paths` laid over the defaults in order (none: only defaults), applies
    /// `WALLETGUARD_*` overrides from the process environment, and validates. With several
    /// files an error names the file that set the bad key last.
    pub fn load_layers(paths: &[PathBuf]) -> Result<Config, ConfigError> {
        let layers = paths
            .iter()
            .map(|p| Layer::read(p))
            .collect::<Result<Vec<_>, _>>()?;
        Config::from_layers_with_env(&layers, std::env::vars())
    }

    /// Parses TOML text, applies overrides from `env` (name, value pairs), and validates.
    pub fn from_toml_with_env(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let file: toml::Table =
            toml::from_str(text).map_err(|e| ConfigError::Syntax { msg: e.to_string() })?;
        Config::from_tables_with_env(vec![file], env)
    }

    /// Parses each layer's TOML, lays them over the defaults in order, applies overrides from
    /// `env`, and validates. A syntax error names its file; a bad key names the last file that
    /// set it, or else the last that set anything in its table (none when only the defaults
    /// or the environment did). One layer behaves exactly
    /// like [`Config::from_toml_with_env`], with the file named in errors.
    pub fn from_layers_with_env(
        layers: &[Layer],
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut tables = Vec::with_capacity(layers.len());
        for l in layers {
            let t: toml::Table = toml::from_str(&l.text).map_err(|e| ConfigError::InFile {
                file: l.name.clone(),
                inner: Box::new(ConfigError::Syntax { msg: e.to_string() }),
            })?;
            tables.push(t);
        }
        Config::from_tables_with_env(tables.clone(), env).map_err(|e| {
            // The last file that sets the key; for a rule between keys (review ≤ step_up) the
            // named key may come from the defaults, so then the last file that sets anything
            // in its table.
            let last_setting = |k: &str| {
                tables
                    .iter()
                    .zip(layers)
                    .rev()
                    .find(|(t, _)| defines(t, k))
                    .map(|(_, l)| l.name.clone())
            };
            let culprit = e.key().and_then(|k| {
                last_setting(k).or_else(|| {
                    let parent = k.rsplit_once('.').map(|(p, _)| p)?;
                    last_setting(parent)
                })
            });
            match culprit {
                Some(file) => ConfigError::InFile {
                    file,
                    inner: Box::new(e),
                },
                None => e,
            }
        })
    }

    fn from_tables_with_env(
        files: Vec<toml::Table>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        // Start from the defaults and lay the files over them, so a partial table (say
        // `[detectors.new_device]` with only `enabled = false`) or a lone environment override
        // keeps every other key's default.
        let mut root =
            toml::Table::try_from(Config::default()).map_err(|e| ConfigError::Syntax {
                msg: format!("defaults do not serialise: {e}"),
            })?;
        for file in files {
            merge(&mut root, file);
        }
        let mut overrides: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX) && !ENV_RESERVED.contains(&k.as_str()))
            .collect();
        overrides.sort();
        for (var, value) in overrides {
            apply_env(&mut root, &var, &value)?;
        }
        let cfg: Config =
            serde_path_to_error::deserialize(toml::Value::Table(root)).map_err(|e| {
                ConfigError::Type {
                    key: e.path().to_string(),
                    msg: e.into_inner().to_string(),
                }
            })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The shadow candidate: this config with `[shadow] config` laid over it (and the
    /// `WALLETGUARD_*` environment, as for the live one); `None` when shadow scoring is off.
    pub fn shadow_candidate(&self) -> Result<Option<Config>, ConfigError> {
        let Some(path) = self.shadow.path() else {
            return Ok(None);
        };
        let text = toml::to_string(self).map_err(|e| ConfigError::Syntax {
            msg: format!("the live config does not serialise: {e}"),
        })?;
        let layers = [
            Layer {
                name: "(live config)".into(),
                text,
            },
            Layer::read(&path)?,
        ];
        Config::from_layers_with_env(&layers, std::env::vars()).map(Some)
    }

    /// The engine's sections (a copy; see [`EngineConfig`]).
    pub fn engine(&self) -> EngineConfig {
        // Only the engine's sections: the service's (subscriptions, kafka maps) are not copied.
        EngineConfig {
            general: self.general.clone(),
            baseline: self.baseline.clone(),
            prior: self.prior.clone(),
            detectors: self.detectors.clone(),
            decision: self.decision.clone(),
            feedback: self.feedback.clone(),
            notify: self.notify.clone(),
        }
    }

    /// A short digest of everything but `[kafka]` and `[http]`: what a reload can change.
    /// Exported as `walletguard_config_info{hash}`.
    pub fn detection_hash(&self) -> String {
        let mut c = self.clone();
        c.kafka = KafkaConfig::default();
        c.http = HttpConfig::default();
        let text = toml::to_string(&c).unwrap_or_default();
        format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes()))
    }

    /// Parses TOML text without looking at the environment.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_with_env(text, std::iter::empty())
    }

    /// Checks every rule that types alone cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        // Each section checks its own table, in file order.
        self.engine().validate()?;
        self.shadow.validate()?;
        self.log.validate()?;
        self.kafka.validate()?;
        self.http.validate()?;
        crate::service::channels::validate(&self.subscriptions, &self.kafka.input_topics)?;
        Ok(())
    }
}

/// Lays `over` onto `base`, table by table; other values replace.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Applies one `WALLETGUARD_A__B=value` override to the TOML tree. The value is read as a
/// TOML value when it parses as one (numbers, booleans, arrays), else as a plain string.
fn apply_env(root: &mut toml::Table, var: &str, value: &str) -> Result<(), ConfigError> {
    let path: Vec<String> = var[ENV_PREFIX.len()..]
        .split("__")
        .map(|s| s.to_ascii_lowercase())
        .collect();
    if path.iter().any(String::is_empty) {
        return Err(ConfigError::Env {
            var: var.into(),
            msg: "empty key segment (use __ between levels, e.g. WALLETGUARD_DECISION__FREEZE)"
                .into(),
        });
    }
    let parsed: toml::Value = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()));
    let (last, parents) = path.split_last().ok_or_else(|| ConfigError::Env {
        var: var.into(),
        msg: "no key".into(),
    })?;
    let mut table = root;
    for seg in parents {
        let entry = table
            .entry(seg.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry.as_table_mut().ok_or_else(|| ConfigError::Env {
            var: var.into(),
            msg: format!("`{seg}` is not a table"),
        })?;
    }
    table.insert(last.clone(), parsed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
        assert_eq!(Config::from_toml("").unwrap(), Config::default());
    }

    #[test]
    fn shipped_file_matches_defaults() {
        // The commented file in config/ documents every knob; it must stay loadable, and its
        // values are the defaults the code ships with.
        let text = include_str!("../../config/walletguard.toml");
        let cfg = Config::from_toml(text).unwrap();
        assert_eq!(cfg, Config::default());
    }

    /// Dotted paths of every key under `t` (tables recursed into; arrays of tables by their
    /// first element, as `subscriptions[0].name`).
    fn key_paths(t: &toml::Table, prefix: &str, out: &mut Vec<String>) {
        for (k, v) in t {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Table(sub) => key_paths(sub, &path, out),
                toml::Value::Array(a) if a.iter().all(toml::Value::is_table) && !a.is_empty() => {
                    if let Some(toml::Value::Table(first)) = a.first() {
                        key_paths(first, &format!("{path}[0]"), out);
                    }
                }
                _ => out.push(path),
            }
        }
    }

    #[test]
    fn shipped_file_spells_out_every_default_key() {
        // Parsed on its own, without the defaults laid under it: a section (a new detector's
        // table, say) missing from the file must fail here, not pass by merging.
        let text = include_str!("../../config/walletguard.toml");
        let file: toml::Table = toml::from_str(text).unwrap();
        let defaults = toml::Table::try_from(Config::default()).unwrap();
        let (mut have, mut want) = (Vec::new(), Vec::new());
        key_paths(&file, "", &mut have);
        key_paths(&defaults, "", &mut want);
        let missing: Vec<&String> = want.iter().filter(|k| !have.contains(k)).collect();
        assert!(
            missing.is_empty(),
            "config/walletguard.toml lacks {missing:?}"
        );
        let unknown: Vec<&String> = have.iter().filter(|k| !want.contains(k)).collect();
        assert!(
            unknown.is_empty(),
            "config/walletguard.toml has no default for {unknown:?}"
        );
    }

    #[test]
    fn partial_tables_and_lone_overrides_keep_defaults() {
        let cfg = Config::from_toml("[detectors.new_device]\nenabled = false\n").unwrap();
        assert!(!cfg.detectors.new_device.enabled);
        assert_eq!(
            cfg.detectors.new_device.weight,
            Config::default().detectors.new_device.weight
        );
        let cfg = Config::from_toml_with_env(
            "",
            vec![(
                "WALLETGUARD_DETECTORS__NEW_LOCATION__ENABLED".to_string(),
                "false".to_string(),
            )],
        )
        .unwrap();
        assert!(!cfg.detectors.new_location.enabled);
    }

    #[test]
    fn silent_misconfigurations_are_rejected() {
        for (text, key) in [
            (
                "[detectors.payee_buildup]\nfull_share = 0.01\n",
                "detectors.payee_buildup.full_share",
            ),
            (
                "[detectors.payee_buildup]\nwindow_days = 0\n",
                "detectors.payee_buildup.window_days",
            ),
            (
                "[detectors.payee_buildup]\nfull_count = 1\n",
                "detectors.payee_buildup.full_count",
            ),
            (
                "[detectors.card_testing]\nstranger_full_count = 1.0\n",
                "detectors.card_testing.stranger_full_count",
            ),
            (
                "[detectors.failed_attempts]\nstart_count = -5.0\n",
                "detectors.failed_attempts.start_count",
            ),
            (
                "[detectors.card_testing]\nfull_count = inf\n",
                "detectors.card_testing.full_count",
            ),
            (
                "[detectors.velocity_burst]\nmin_count = 12\n",
                "detectors.velocity_burst.min_count",
            ),
            (
                "[baseline]\nhalf_life_days = 1000.0\n",
                "baseline.half_life_days",
            ),
        ] {
            let e = Config::from_toml(text).unwrap_err();
            assert_eq!(e.key(), Some(key), "{text}: {e}");
        }
    }

    fn layers(files: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let l: Vec<Layer> = files
            .iter()
            .map(|(n, t)| Layer {
                name: n.to_string(),
                text: t.to_string(),
            })
            .collect();
        Config::from_layers_with_env(&l, std::iter::empty())
    }

    #[test]
    fn layers_apply_in_order_and_the_later_file_wins() {
        let c = layers(&[
            ("base.toml", "[decision]\nfreeze = 0.9\nstep_up = 0.7\n"),
            ("over.toml", "[decision]\nfreeze = 0.95\n"),
        ])
        .unwrap();
        assert_eq!(c.decision.freeze, 0.95);
        assert_eq!(c.decision.step_up, 0.7, "a key only the base sets stays");
        assert_eq!(c.decision.review, DecisionConfig::default().review);
        let c = layers(&[
            ("over.toml", "[decision]\nfreeze = 0.95\n"),
            ("base.toml", "[decision]\nfreeze = 0.9\nstep_up = 0.7\n"),
        ])
        .unwrap();
        assert_eq!(c.decision.freeze, 0.9, "order matters");
        // One layer is the single-file load.
        assert_eq!(
            layers(&[("a.toml", "[decision]\nfreeze = 0.9\n")]).unwrap(),
            Config::from_toml("[decision]\nfreeze = 0.9\n").unwrap()
        );
    }

    #[test]
    fn a_bad_key_in_a_layer_is_named_with_its_file() {
        let e = layers(&[
            ("base.toml", "[decision]\nfreeze = 0.9\n"),
            ("overlay.toml", "[decision]\nfreez = 0.9\n"),
        ])
        .unwrap_err();
        assert_eq!(e.file(), Some("overlay.toml"));
        assert_eq!(e.key(), Some("decision.freez"));
        assert!(e.to_string().starts_with("overlay.toml: "), "{e}");
        // The base sets the bad value, the overlay another key of the table.
        let e = layers(&[
            ("base.toml", "[decision]\nfreeze = 2.0\n"),
            ("overlay.toml", "[decision]\nreview = 0.4\n"),
        ])
        .unwrap_err();
        assert_eq!(
            (e.file(), e.key()),
            (Some("base.toml"), Some("decision.freeze"))
        );
        // The overlay breaks a rule between keys whose named key only the defaults set.
        let e = layers(&[
            ("base.toml", "[general]\ndefault_currency = \"USD\"\n"),
            ("overlay.toml", "[decision]\nreview = 0.95\n"),
        ])
        .unwrap_err();
        assert_eq!(e.file(), Some("overlay.toml"), "{e}");
        // A later file overriding a bad value repairs it.
        assert!(layers(&[
            ("base.toml", "[decision]\nfreeze = 2.0\n"),
            ("overlay.toml", "[decision]\nfreeze = 0.9\n"),
        ])
        .is_ok());
        let e = layers(&[("a.toml", "ok = 1\n"), ("b.toml", "[decision\n")]).unwrap_err();
        assert_eq!(e.file(), Some("b.toml"));
        let e = layers(&[(
            "a.toml",
            "[[subscriptions]]\nname = \"x\"\ntopic = \"t\"\nmin_severity = \"zz\"\n",
        )])
        .unwrap_err();
        assert_eq!(
            (e.file(), e.key()),
            (Some("a.toml"), Some("subscriptions[0].min_severity"))
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Config::from_toml("[decision]\nfreez = 0.9\n").unwrap_err();
        assert_eq!(e.key(), Some("decision.freez"));
        assert!(e.to_string().contains("unknown field `freez`"), "{e}");
    }

    #[test]
    fn wrong_type_is_named() {
        let e = Config::from_toml("[detectors.balance_drain]\nweight = \"high\"\n").unwrap_err();
        assert_eq!(e.key(), Some("detectors.balance_drain.weight"), "{e}");
    }

    #[test]
    fn rule_violations_are_named() {
        let e = Config::from_toml("[decision]\nreview = 0.9\nstep_up = 0.5\n").unwrap_err();
        assert_eq!(e.key(), Some("decision.step_up"));
        let e = Config::from_toml("[general]\nutc_offset = \"8\"\n").unwrap_err();
        assert_eq!(e.key(), Some("general.utc_offset"));
        let e = Config::from_toml("[baseline]\ncounterparties = 40\n").unwrap_err();
        assert_eq!(e.key(), Some("baseline.counterparties"));
        let e = Config::from_toml("[baseline]\nipv4_prefix_bits = 33\n").unwrap_err();
        assert_eq!(e.key(), Some("baseline.ipv4_prefix_bits"));
        let e = Config::from_toml("[prior]\nhour_weights = [1.0]\n").unwrap_err();
        assert_eq!(e.key(), Some("prior.hour_weights"));
        let seed = |kind: &str, q: &str| {
            format!(
                "[[prior.amounts]]\ncurrency = \"CNY\"\ntype = \"{kind}\"\nln_quantiles = {q}\n"
            )
        };
        let ok_q = "[1.0, 2.0, 2.5, 3.0, 4.0, 4.5, 5.0, 6.0, 7.0]";
        assert!(Config::from_toml(&seed("transfer", ok_q)).is_ok());
        let e = Config::from_toml(&seed("login", ok_q)).unwrap_err();
        assert_eq!(e.key(), Some("prior.amounts[0].type"));
        let e = Config::from_toml(&seed(
            "transfer",
            "[3.0, 2.0, 2.5, 3.0, 4.0, 4.5, 5.0, 6.0, 7.0]",
        ))
        .unwrap_err();
        assert_eq!(e.key(), Some("prior.amounts[0].ln_quantiles"));
    }

    #[test]
    fn env_overrides_apply_and_are_checked() {
        let env = vec![
            (
                "WALLETGUARD_DECISION__FREEZE".to_string(),
                "0.95".to_string(),
            ),
            (
                "WALLETGUARD_GENERAL__DEFAULT_CURRENCY".to_string(),
                "USD".to_string(),
            ),
            ("WALLETGUARD_CONFIG".to_string(), "/ignored".to_string()),
            ("OTHER".to_string(), "x".to_string()),
        ];
        let cfg = Config::from_toml_with_env("", env).unwrap();
        assert_eq!(cfg.decision.freeze, 0.95);
        assert_eq!(cfg.general.default_currency, "USD");
        let e = Config::from_toml_with_env(
            "",
            vec![("WALLETGUARD_DECISION__FROZE".to_string(), "1".to_string())],
        )
        .unwrap_err();
        assert!(e.to_string().contains("froze"), "{e}");
        let e = Config::from_toml_with_env(
            "",
            vec![("WALLETGUARD_DECISION__FREEZE".to_string(), "2".to_string())],
        )
        .unwrap_err();
        assert_eq!(e.key(), Some("decision.freeze"));
    }

    /// Every value of the shipped file replaced, one at a time, by values of other types and
    /// out-of-range numbers, and unknown keys added to every section: each result is a config
    /// or an error that names a key (or, for text that is no longer TOML, a syntax error).
    /// `WG_FUZZ_SCALE` = n adds n − 1 random values per key (outside CI).
    #[test]
    fn any_mutation_of_the_shipped_file_is_a_config_or_names_its_key() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/walletguard.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let fixed = [
            "-1",
            "0",
            "1",
            "0.5",
            "-0.0",
            "nan",
            "inf",
            "-inf",
            "1e300",
            "9223372036854775807",
            "\"x\"",
            "\"\"",
            "true",
            "[]",
            "[1, \"a\"]",
            "{}",
            "{ a = 1 }",
            "1979-05-27",
        ];
        let rounds = crate::fuzz::scale() - 1;
        let mut rng = crate::fuzz::XorShift(0x2545_F491_4F6C_DD1D);
        let mut next = move || rng.next();
        let mut cases = 0u64;
        let mut check = |mutated: String, what: &str| {
            cases += 1;
            match Config::from_toml(&mutated) {
                Ok(_) | Err(ConfigError::Syntax { .. }) => {}
                Err(e) => assert!(
                    e.key().is_some_and(|k| !k.is_empty()),
                    "{what}: error names no key: {e}"
                ),
            }
        };
        for (i, line) in lines.iter().enumerate() {
            let t = line.trim_start();
            if t.starts_with('#') || t.starts_with('[') || !t.contains(" = ") {
                if t.starts_with('[') && !t.starts_with("[[") {
                    let mut m = lines.clone();
                    m.insert(i + 1, "bogus_key_xyz = 1");
                    check(m.join("\n"), &format!("unknown key after line {}", i + 1));
                }
                continue;
            }
            let Some((k, _)) = line.split_once(" = ") else {
                continue;
            };
            let mut values: Vec<String> = fixed.iter().map(|v| v.to_string()).collect();
            for _ in 0..rounds {
                let n = next();
                values.push(match n % 4 {
                    0 => format!("{}", n as i64),
                    1 => format!("{:e}", f64::from_bits(n)).replace("NaN", "nan"),
                    2 => format!("\"{}\"", n % 1000),
                    _ => format!("{}", (n % 200_000) as i64 - 100_000),
                });
            }
            for v in values {
                let mut m = lines.clone();
                let replaced = format!("{k} = {v}");
                m[i] = &replaced;
                check(m.join("\n"), &format!("line {}: {replaced}", i + 1));
            }
        }
        eprintln!("{cases} config mutations checked");
        assert!(cases > 1_000, "only {cases} cases");
    }
}
