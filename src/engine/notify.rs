//! Owner notifications (`notify_user`, contract v2): "real-time monitoring notifies the user of
//! abnormal logins or transactions".
//!
//! PURE. The pipeline asks [`Notifier::kind`] whether an event deserves a notice and applies
//! the per-user rate limit (the last notice's time lives in the user's
//! [`crate::engine::feedback::Case`], so it is in the changelog and replay and Kafka agree); the
//! adapters render the message with [`Notifier::message`] when they write the command.
//!
//! | notice | when |
//! |---|---|
//! | `new_device_login` | a successful login from a device the user never used |
//! | `new_place_login` | a successful login from a never-seen geo cell at least `new_place_km` from the last learned position |
//! | `new_device_money_out` / `new_place_money_out` | money out from a never-seen device / such a place |
//! | `review_money_out` | money out the decision put at `review` |
//!
//! Never for an event that gets another command (a freeze has its own, a step-up reaches the
//! owner already), never for a user without history (everything is new to a new user), and at
//! most one per user per `notify.min_interval_minutes`.
//!
//! Messages come from `[notify.templates.<language>]` (`en` and `zh` ship), with
//! placeholders `{time}` (local `HH:MM` by `general.utc_offset`), `{place}` (rounded
//! coordinates through the template's `near` text, or its `unknown_place` text), `{amount}`
//! and `{currency}`. They carry no ids.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::baseline::Facts;
use crate::engine::decision::Action;
use crate::engine::detect::haversine_km;
use crate::engine::event::{Event, EventType, Status};
use crate::engine::validate::{invalid, Checked};

/// Which notice an event gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotifyKind {
    /// A login from a never-seen device.
    NewDeviceLogin,
    /// A login from a never-seen place.
    NewPlaceLogin,
    /// Money out from a never-seen device.
    NewDeviceMoneyOut,
    /// Money out from a never-seen place.
    NewPlaceMoneyOut,
    /// Money out at `review`.
    ReviewMoneyOut,
}

impl NotifyKind {
    /// Every kind.
    pub const ALL: [NotifyKind; 5] = [
        NotifyKind::NewDeviceLogin,
        NotifyKind::NewPlaceLogin,
        NotifyKind::NewDeviceMoneyOut,
        NotifyKind::NewPlaceMoneyOut,
        NotifyKind::ReviewMoneyOut,
    ];

    /// The template key (and metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyKind::NewDeviceLogin => "new_device_login",
            NotifyKind::NewPlaceLogin => "new_place_login",
            NotifyKind::NewDeviceMoneyOut => "new_device_money_out",
            NotifyKind::NewPlaceMoneyOut => "new_place_money_out",
            NotifyKind::ReviewMoneyOut => "review_money_out",
        }
    }
}

/// One language's texts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Templates {
    /// `new_device_login`.
    pub new_device_login: String,
    /// `new_place_login`.
    pub new_place_login: String,
    /// `new_device_money_out`.
    pub new_device_money_out: String,
    /// `new_place_money_out`.
    pub new_place_money_out: String,
    /// `review_money_out`.
    pub review_money_out: String,
    /// What `{place}` becomes with a position: `{lat}` and `{lon}` rounded to 0.1°.
    pub near: String,
    /// What `{place}` becomes without one.
    pub unknown_place: String,
}

impl Templates {
    fn get(&self, k: NotifyKind) -> &str {
        match k {
            NotifyKind::NewDeviceLogin => &self.new_device_login,
            NotifyKind::NewPlaceLogin => &self.new_place_login,
            NotifyKind::NewDeviceMoneyOut => &self.new_device_money_out,
            NotifyKind::NewPlaceMoneyOut => &self.new_place_money_out,
            NotifyKind::ReviewMoneyOut => &self.review_money_out,
        }
    }

    fn english() -> Templates {
        Templates {
            new_device_login: "New sign-in to your wallet from a new device {place} at {time}. If this was not you, freeze your account in the app now.".into(),
            new_place_login: "New sign-in to your wallet from a new location {place} at {time}. If this was not you, freeze your account in the app now.".into(),
            new_device_money_out: "{amount} {currency} was sent from your wallet on a new device {place} at {time}. If this was not you, freeze your account in the app now.".into(),
            new_place_money_out: "{amount} {currency} was sent from your wallet from a new location {place} at {time}. If this was not you, freeze your account in the app now.".into(),
            review_money_out: "{amount} {currency} left your wallet at {time}, which is unusual for you. If this was not you, freeze your account in the app now.".into(),
            near: "near {lat}, {lon}".into(),
            unknown_place: "(location unknown)".into(),
        }
    }

    fn chinese() -> Templates {
        Templates {
            new_device_login: "您的钱包于 {time} 在新设备上登录（{place}）。如非本人操作，请立即在 App 中冻结账户。".into(),
            new_place_login: "您的钱包于 {time} 在新的地点登录（{place}）。如非本人操作，请立即在 App 中冻结账户。".into(),
            new_device_money_out: "您的钱包于 {time} 在新设备上转出 {amount} {currency}（{place}）。如非本人操作，请立即在 App 中冻结账户。".into(),
            new_place_money_out: "您的钱包于 {time} 在新的地点转出 {amount} {currency}（{place}）。如非本人操作，请立即在 App 中冻结账户。".into(),
            review_money_out: "您的钱包于 {time} 转出 {amount} {currency}，与您的习惯不符。如非本人操作，请立即在 App 中冻结账户。".into(),
            near: "北纬/东经约 {lat}, {lon}".into(),
            unknown_place: "位置未知".into(),
        }
    }
}

/// `[notify]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Emit `notify_user` commands.
    pub enabled: bool,
    /// At most one notice per user per this many minutes.
    pub min_interval_minutes: f64,
    /// Which `templates` table messages use.
    pub language: String,
    /// Learned events a user needs before notices start (everything is new to a new user).
    pub min_history_events: f64,
    /// A never-seen place is news to the owner only this far (km) from the last learned
    /// position. Why: geo cells are coarse and few are remembered, so an owner moving about
    /// their own city crosses into "new" cells all the time (seed-12 world: 95% of new-place
    /// notices were under 25 km away). A place without a position (a new network only) is
    /// never a notice by itself: mobile carriers change networks constantly.
    pub new_place_km: f64,
    /// Texts by language.
    pub templates: BTreeMap<String, Templates>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            enabled: true,
            min_interval_minutes: 60.0,
            language: "en".into(),
            min_history_events: 10.0,
            new_place_km: 100.0,
            templates: [
                ("en".to_owned(), Templates::english()),
                ("zh".to_owned(), Templates::chinese()),
            ]
            .into_iter()
            .collect(),
        }
    }
}

const PLACEHOLDERS: [&str; 4] = ["{time}", "{place}", "{amount}", "{currency}"];

impl NotifyConfig {
    /// Checks the rules of `[notify]`; the error names the key.
    pub fn validate(&self) -> Checked {
        if !(self.min_history_events >= 0.0 && self.min_history_events <= 1e6) {
            return Err(invalid("notify.min_history_events", "must be 0 to 1000000"));
        }
        if !(self.new_place_km >= 0.0 && self.new_place_km <= 20_100.0) {
            return Err(invalid(
                "notify.new_place_km",
                "must be 0 to 20100 (half the earth's circumference)",
            ));
        }
        if !(self.min_interval_minutes >= 0.0 && self.min_interval_minutes <= 525_600.0) {
            return Err(invalid(
                "notify.min_interval_minutes",
                "must be 0 to 525600 (a year)",
            ));
        }
        if !self.templates.contains_key(&self.language) {
            return Err(invalid(
                "notify.language",
                format!(
                    "`{}` has no [notify.templates.{}] table",
                    self.language, self.language
                ),
            ));
        }
        for (lang, t) in &self.templates {
            for k in NotifyKind::ALL {
                let text = t.get(k);
                let key = format!("notify.templates.{lang}.{}", k.as_str());
                if text.trim().is_empty() || text.chars().count() > 500 {
                    return Err(invalid(&key, "must be 1 to 500 characters"));
                }
                // Only known placeholders: a typo would otherwise reach the owner verbatim.
                let mut rest = text;
                while let Some(i) = rest.find('{') {
                    let tail = &rest[i..];
                    let end = tail.find('}').map_or(tail.len(), |e| e + 1);
                    if !PLACEHOLDERS.contains(&&tail[..end]) {
                        return Err(invalid(
                            &key,
                            format!(
                                "unknown placeholder `{}` (use {})",
                                &tail[..end],
                                PLACEHOLDERS.join(", ")
                            ),
                        ));
                    }
                    rest = &tail[end..];
                }
            }
            if t.near.trim().is_empty() || t.unknown_place.trim().is_empty() {
                return Err(invalid(
                    &format!("notify.templates.{lang}.near"),
                    "near and unknown_place must not be empty",
                ));
            }
        }
        Ok(())
    }
}

/// The compiled `[notify]` section.
#[derive(Debug, Clone)]
pub struct Notifier {
    enabled: bool,
    interval_s: u32,
    min_history: f64,
    new_place_km: f64,
    templates: Templates,
    utc_offset_min: i32,
}

impl Notifier {
    /// From config; `utc_offset_min` renders `{time}`.
    pub fn new(cfg: &NotifyConfig, utc_offset_min: i32) -> Notifier {
        Notifier {
            enabled: cfg.enabled,
            interval_s: (cfg.min_interval_minutes * 60.0) as u32,
            min_history: cfg.min_history_events,
            new_place_km: cfg.new_place_km,
            templates: cfg
                .templates
                .get(&cfg.language)
                .cloned()
                .unwrap_or_else(Templates::english),
            utc_offset_min,
        }
    }

    /// Whether notices are on.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The rate limit, seconds.
    pub fn interval_s(&self) -> u32 {
        self.interval_s
    }

    /// The notice event `ev` of a user with `history` learned events and last learned
    /// position `last_geo` (degrees) deserves at `action` (before the rate limit), if any.
    pub fn kind(
        &self,
        ev: &Event<'_>,
        f: &Facts,
        history: f64,
        last_geo: Option<(f64, f64)>,
        action: Action,
    ) -> Option<NotifyKind> {
        if !self.enabled || !f.has_history || history < self.min_history || action > Action::Review
        {
            return None;
        }
        // A never-seen cell far from where the user last was; with no learned position yet,
        // any never-seen cell (there is nothing to measure from).
        let new_place = matches!(f.cell, Some((_, false)))
            && match (ev.geo, last_geo) {
                (Some(g), Some((lat, lon))) => {
                    haversine_km(g.lat, g.lon, lat, lon) >= self.new_place_km
                }
                _ => true,
            };
        if ev.kind == EventType::Login && ev.status == Status::Success {
            if f.new_device() {
                return Some(NotifyKind::NewDeviceLogin);
            }
            if new_place {
                return Some(NotifyKind::NewPlaceLogin);
            }
        } else if ev.kind.is_money_out() && ev.status == Status::Success {
            if f.new_device() {
                return Some(NotifyKind::NewDeviceMoneyOut);
            }
            if new_place {
                return Some(NotifyKind::NewPlaceMoneyOut);
            }
            if action == Action::Review {
                return Some(NotifyKind::ReviewMoneyOut);
            }
        }
        None
    }

    /// The owner's message for notice `k` about event `ev`.
    pub fn message(&self, k: NotifyKind, ev: &Event<'_>) -> String {
        let t = &self.templates;
        let local = ev.ts_ms.div_euclid(1000) + i64::from(self.utc_offset_min) * 60;
        let secs = local.rem_euclid(86_400);
        let time = format!("{:02}:{:02}", secs / 3600, secs % 3600 / 60);
        let place = match ev.geo {
            Some(g) => t
                .near
                .replace("{lat}", &format!("{:.1}", g.lat))
                .replace("{lon}", &format!("{:.1}", g.lon)),
            None => t.unknown_place.clone(),
        };
        let amount = ev.amount.map_or_else(String::new, |a| format!("{a:.2}"));
        let currency = ev
            .currency
            .as_ref()
            .and_then(|c| std::str::from_utf8(c).ok())
            .unwrap_or("");
        t.get(k)
            .replace("{time}", &time)
            .replace("{place}", &place)
            .replace("{amount}", &amount)
            .replace("{currency}", currency)
            .trim()
            .to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_templates_are_valid_and_typos_are_named() {
        let c = NotifyConfig::default();
        c.validate().unwrap();
        let mut bad = c.clone();
        if let Some(t) = bad.templates.get_mut("zh") {
            t.review_money_out = "转出 {amout}".into();
        }
        let e = bad.validate().unwrap_err().to_string();
        assert!(
            e.contains("notify.templates.zh.review_money_out") && e.contains("{amout}"),
            "{e}"
        );
        let mut far = c.clone();
        far.new_place_km = -1.0;
        assert!(far
            .validate()
            .unwrap_err()
            .to_string()
            .contains("notify.new_place_km"));
        let mut lang = c;
        lang.language = "fr".into();
        assert!(lang
            .validate()
            .unwrap_err()
            .to_string()
            .contains("notify.language"));
    }

    #[test]
    fn messages_say_what_where_and_when_in_local_time() {
        let n = Notifier::new(&NotifyConfig::default(), 8 * 60);
        let line = r#"{"event_id":"e1","user_id":"u1","ts":"2026-04-07T03:12:00Z","type":"transfer","amount":300,"currency":"CNY","counterparty":"p","geo":{"lat":31.23,"lon":121.47}}"#;
        let ev = crate::engine::event::parse_event(line.as_bytes()).unwrap();
        let m = n.message(NotifyKind::NewDeviceMoneyOut, &ev);
        assert!(
            m.contains("300.00 CNY") && m.contains("11:12") && m.contains("31.2, 121.5"),
            "{m}"
        );
        assert!(!m.contains("u1") && !m.contains("e1"), "no ids: {m}");
        let zh = NotifyConfig {
            language: "zh".into(),
            ..NotifyConfig::default()
        };
        let m = Notifier::new(&zh, 8 * 60).message(NotifyKind::NewDeviceLogin, &ev);
        assert!(m.contains("新设备") && m.contains("11:12"), "{m}");
    }
}
