//! Hot config reload for `walletguard run`: on SIGHUP or when a config file changes, the
//! files are loaded (layered in order) and validated again, and the detection settings (thresholds, weights,
//! windows, subscriptions) replace the running ones without a restart.
//!
//! What cannot change live is kept at its running value and named in a warning (and in
//! `walletguard_config_restart_pending`) until the next restart:
//! - `[kafka]`: brokers, group, topics and delivery belong to the open clients and sessions;
//! - `[http]`: the endpoint is bound;
//! - `[log]`: the subscriber is installed once;
//! - the baseline keys that shape a profile (set sizes, geo cell size): the profiles in memory
//!   and in the changelog are laid out by them;
//!
//! An invalid file is rejected with the error naming its key, and the running config stays.
//! [`plan`] is the pure decision; [`Reloader`] does the file and the swap.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::service::config::{Config, ConfigError};
use crate::service::live::{Live, LiveCell};
use crate::service::metrics::Metrics;

/// Keys (dotted prefixes) that only a restart can change.
pub const RESTART_ONLY: &[&str] = &[
    "kafka",
    "http",
    "log",
    "shadow.decisions_topic",
    "baseline.devices",
    "baseline.counterparties",
    "baseline.merchants",
    "baseline.ip_prefixes",
    "baseline.geo_cells",
    "baseline.geo_cell_degrees",
    "baseline.ipv4_prefix_bits",
];

/// What a reload will do.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The config to run with: the new file, with restart-only keys at their running values.
    pub effective: Config,
    /// Keys whose new values take effect now.
    pub live: Vec<String>,
    /// Keys that differ in the file but wait for a restart.
    pub restart_pending: Vec<String>,
}

fn restart_only(key: &str) -> bool {
    RESTART_ONLY
        .iter()
        .any(|p| key == *p || key.strip_prefix(p).is_some_and(|r| r.starts_with('.')))
}

fn table(cfg: &Config) -> toml::Table {
    // A validated config always serialises; an empty table would only hide differences.
    toml::Table::try_from(cfg).unwrap_or_default()
}

/// Dotted keys whose values differ between `a` and `b` (arrays, such as `subscriptions`,
/// compare whole).
pub fn changed_keys(a: &Config, b: &Config) -> Vec<String> {
    let mut out = Vec::new();
    diff(&table(a), &table(b), "", &mut out);
    out.sort();
    out
}

fn diff(a: &toml::Table, b: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    let key = |k: &str| {
        if prefix.is_empty() {
            k.to_owned()
        } else {
            format!("{prefix}.{k}")
        }
    };
    for (k, va) in a {
        match (va, b.get(k)) {
            (toml::Value::Table(ta), Some(toml::Value::Table(tb))) => diff(ta, tb, &key(k), out),
            (va, Some(vb)) if va == vb => {}
            _ => out.push(key(k)),
        }
    }
    for k in b.keys() {
        if !a.contains_key(k) {
            out.push(key(k));
        }
    }
}

/// Decides what loading `new` over the `running` config does.
pub fn plan(running: &Config, new: Config) -> Plan {
    let mut effective = new;
    effective.kafka = running.kafka.clone();
    effective.http = running.http.clone();
    effective.log = running.log.clone();
    effective.shadow.decisions_topic = running.shadow.decisions_topic.clone();
    let b = &running.baseline;
    let e = &mut effective.baseline;
    e.devices = b.devices;
    e.counterparties = b.counterparties;
    e.merchants = b.merchants;
    e.ip_prefixes = b.ip_prefixes;
    e.geo_cells = b.geo_cells;
    e.geo_cell_degrees = b.geo_cell_degrees;
    e.ipv4_prefix_bits = b.ipv4_prefix_bits;
    Plan {
        live: changed_keys(running, &effective),
        restart_pending: Vec::new(),
        effective,
    }
}

/// The result of one reload attempt.
#[derive(Debug)]
pub enum ReloadOutcome {
    /// New detection settings are running.
    Applied {
        /// Keys that changed.
        live: Vec<String>,
        /// Keys waiting for a restart.
        restart_pending: Vec<String>,
    },
    /// The file has no live change (maybe restart-only ones).
    Unchanged {
        /// Keys waiting for a restart.
        restart_pending: Vec<String>,
    },
    /// The file is invalid; the running config stays.
    Rejected(ConfigError),
    /// The new config is valid but cannot run (e.g. a subscription topic that does not exist).
    Refused(String),
}

/// Reloads the config files into a running engine.
pub struct Reloader {
    paths: Vec<PathBuf>,
    engine: Arc<LiveCell>,
    metrics: Arc<Metrics>,
    /// The config as started: restart-only keys are compared against it.
    started: Config,
    last_seen: Vec<Option<(std::time::SystemTime, u64)>>,
}

impl Reloader {
    /// A reloader for the engine started from `started` (loaded from the files `paths` laid
    /// over the defaults in order, or from defaults and the environment when empty).
    pub fn new(
        paths: Vec<PathBuf>,
        started: Config,
        engine: Arc<LiveCell>,
        metrics: Arc<Metrics>,
    ) -> Reloader {
        let mut last_seen = stamps(&paths);
        last_seen.extend(started.shadow.path().map(|p| stamp(&p)));
        Reloader {
            paths,
            engine,
            metrics,
            started,
            last_seen,
        }
    }

    /// True when any file's modification time or size moved since the last look (a file that
    /// is missing for a moment, while an editor replaces it, is not a change).
    pub fn file_changed(&mut self) -> bool {
        let now = self.stamps();
        if now.iter().all(Option::is_some) && now != self.last_seen {
            self.last_seen = now;
            return true;
        }
        false
    }

    /// Loads the file and applies it. `check` vets a valid new config before it runs (the
    /// service checks that its subscription topics exist).
    pub fn reload(&mut self, check: impl FnOnce(&Config) -> Result<(), String>) -> ReloadOutcome {
        self.last_seen = self.stamps();
        let loaded = match Config::load_layers(&self.paths) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, key = e.key().unwrap_or(""), "config reload rejected; keeping the running config");
                self.metrics
                    .config_reloads
                    .with_label_values(&["rejected"])
                    .inc();
                return ReloadOutcome::Rejected(e);
            }
        };
        let running = self.engine.get();
        let mut p = plan(&running.config, loaded.clone());
        p.restart_pending = changed_keys(&self.started, &loaded)
            .into_iter()
            .filter(|k| restart_only(k))
            .collect();
        self.metrics
            .config_restart_pending
            .set(p.restart_pending.len() as i64);
        if !p.restart_pending.is_empty() {
            tracing::warn!(keys = %p.restart_pending.join(","), "config keys changed that only take effect on restart");
        }
        // The shadow candidate is checked before anything changes: a bad candidate rejects
        // the whole reload.
        if let Err(e) = p.effective.shadow_candidate() {
            tracing::error!(error = %e, key = e.key().unwrap_or(""), "config reload rejected: the shadow candidate does not load; keeping the running config");
            self.metrics
                .config_reloads
                .with_label_values(&["rejected"])
                .inc();
            return ReloadOutcome::Rejected(e);
        }
        if p.live.is_empty() {
            // Only the candidate's own file may have changed.
            if let Ok(true) = self.reload_shadow(&p.effective) {
                self.metrics
                    .config_reloads
                    .with_label_values(&["applied"])
                    .inc();
                return ReloadOutcome::Applied {
                    live: vec!["shadow".into()],
                    restart_pending: p.restart_pending,
                };
            }
            self.metrics
                .config_reloads
                .with_label_values(&["unchanged"])
                .inc();
            return ReloadOutcome::Unchanged {
                restart_pending: p.restart_pending,
            };
        }
        if let Err(msg) = check(&p.effective) {
            tracing::error!(error = %msg, "config reload refused; keeping the running config");
            self.metrics
                .config_reloads
                .with_label_values(&["rejected"])
                .inc();
            return ReloadOutcome::Refused(msg);
        }
        let hash = p.effective.detection_hash();
        // Loaded a moment ago; an error now (the file vanished) keeps the running candidate.
        if let Err(e) = self.reload_shadow(&p.effective) {
            tracing::error!(error = %e, "shadow candidate not replaced");
        }
        self.engine.replace(Live::new(p.effective));
        self.metrics.set_config_hash(&hash);
        self.metrics
            .config_reloads
            .with_label_values(&["applied"])
            .inc();
        tracing::info!(keys = %p.live.join(","), %hash, "config reloaded");
        ReloadOutcome::Applied {
            live: p.live,
            restart_pending: p.restart_pending,
        }
    }
}

impl Reloader {
    /// Stamps of the config files and of the running shadow candidate's file.
    fn stamps(&self) -> Vec<Option<(std::time::SystemTime, u64)>> {
        let mut v = stamps(&self.paths);
        v.extend(self.engine.get().config.shadow.path().map(|p| stamp(&p)));
        v
    }

    /// Loads the shadow candidate of `cfg` and swaps it in if it changed; `Err` when the
    /// candidate cannot load (the running one stays).
    fn reload_shadow(&self, cfg: &Config) -> Result<bool, ConfigError> {
        let cand = cfg.shadow_candidate()?;
        let running = self.engine.shadow();
        if running.as_ref().map(|l| &l.config) == cand.as_ref() {
            return Ok(false);
        }
        self.metrics.shadow_active.set(i64::from(cand.is_some()));
        match &cand {
            Some(c) => tracing::info!(hash = %c.detection_hash(), "shadow candidate replaced"),
            None => tracing::info!("shadow scoring off"),
        }
        self.engine.replace_shadow(cand.map(Live::new));
        Ok(true)
    }
}

fn stamps(paths: &[PathBuf]) -> Vec<Option<(std::time::SystemTime, u64)>> {
    paths.iter().map(|p| stamp(p)).collect()
}

fn stamp(path: &Path) -> Option<(std::time::SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(toml: &str) -> Config {
        Config::from_toml(toml).expect("valid")
    }

    #[test]
    fn detection_keys_change_live() {
        let a = Config::default();
        let b = cfg("[decision]\nfreeze = 0.95\n");
        let p = plan(&a, b);
        assert_eq!(p.live, vec!["decision.freeze".to_string()]);
        assert!((p.effective.decision.freeze - 0.95).abs() < 1e-12);
    }

    #[test]
    fn restart_only_keys_keep_their_running_values() {
        let a = Config::default();
        let b = cfg("[kafka]\nbrokers = \"elsewhere:9092\"\n[baseline]\ndevices = 2\n");
        let keys = changed_keys(&a, &b);
        assert_eq!(keys, vec!["baseline.devices", "kafka.brokers"]);
        assert!(keys.iter().all(|k| restart_only(k)));
        let p = plan(&a, b);
        assert!(p.live.is_empty(), "{:?}", p.live);
        assert_eq!(p.effective.kafka.brokers, a.kafka.brokers);
        assert_eq!(p.effective.baseline.devices, a.baseline.devices);
    }

    #[test]
    fn every_restart_only_profile_key_is_held() {
        let a = Config::default();
        let b = cfg(
            "[baseline]\ndevices = 2\ncounterparties = 3\nmerchants = 2\nip_prefixes = 3\n\
             geo_cells = 4\ngeo_cell_degrees = 1.0\nipv4_prefix_bits = 24\n",
        );
        assert_eq!(changed_keys(&a, &b).len(), 7);
        let p = plan(&a, b);
        assert!(
            p.live.is_empty(),
            "held keys must not change live: {:?}",
            p.live
        );
        assert_eq!(p.effective.baseline.ipv4_prefix_bits, 16);
    }

    #[test]
    fn subscriptions_compare_whole() {
        let a = Config::default();
        let b = cfg("[[subscriptions]]\nname = \"x\"\ntopic = \"t.x\"\nmin_severity = \"high\"\n");
        assert_eq!(changed_keys(&a, &b), vec!["subscriptions"]);
        assert!(!restart_only("subscriptions"));
        assert!(!restart_only("kafkaesque"));
        assert!(restart_only("kafka.librdkafka.security.protocol"));
    }

    #[test]
    fn layered_files_reload_together_and_the_overlay_wins() {
        let dir = std::env::temp_dir().join(format!("wg-reload-layers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (base, over) = (dir.join("base.toml"), dir.join("over.toml"));
        std::fs::write(&base, "[decision]\nfreeze = 0.9\n").unwrap();
        std::fs::write(&over, "[decision]\nstep_up = 0.7\n").unwrap();
        let paths = vec![base.clone(), over.clone()];
        let started = Config::load_layers(&paths).unwrap();
        let engine = Arc::new(LiveCell::new(Live::new(started.clone())));
        let metrics = Arc::new(Metrics::new().unwrap());
        let mut r = Reloader::new(paths, started, engine.clone(), metrics);
        // The overlay now also sets freeze: it wins over the base.
        std::fs::write(&over, "[decision]\nstep_up = 0.7\nfreeze = 0.97\n").unwrap();
        match r.reload(|_| Ok(())) {
            ReloadOutcome::Applied { live, .. } => assert_eq!(live, vec!["decision.freeze"]),
            o => panic!("{o:?}"),
        }
        assert_eq!(engine.get().config.decision.freeze, 0.97);
        assert_eq!(engine.get().config.decision.step_up, 0.7);
        // A bad key in the base is rejected, naming the base; the running config stays.
        std::fs::write(&base, "[decision]\nfreez = 0.9\n").unwrap();
        match r.reload(|_| Ok(())) {
            ReloadOutcome::Rejected(e) => {
                assert_eq!(e.file(), Some(base.display().to_string().as_str()))
            }
            o => panic!("{o:?}"),
        }
        assert_eq!(engine.get().config.decision.freeze, 0.97);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
