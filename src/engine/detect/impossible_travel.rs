//! `IMPOSSIBLE_TRAVEL`: the great-circle speed from the last learned position is above what
//! an airliner can do.
//!
//! Short jumps are ignored (`min_distance_km`) because IP geolocation and GPS are noisy. The
//! quickest possible trip is `distance / max_speed_kmh` plus `trip_overhead_hours` (getting to,
//! through and out of airports): nobody flies 1,200 km door to door in 79 minutes, although
//! the straight-line speed is below an airliner's. The score is 0.5 when the time elapsed
//! equals the quickest trip and grows with log10 of how much shorter it was, reaching 1 at
//! about a third of it.

use super::{duration, Code, Detail, Detector, Input, Keep, Signals};
use crate::engine::baseline::{Facts, Profile};
use crate::engine::validate::{nonneg, positive, unit, Checked};
use serde::{Deserialize, Serialize};

/// `[detectors.impossible_travel]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImpossibleTravelConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Weight in the noisy-OR.
    pub weight: f64,
    /// Speed above which travel is impossible, km/h (airliners cruise near 900).
    pub max_speed_kmh: f64,
    /// Jumps shorter than this are ignored (GPS and IP-geolocation noise), km.
    pub min_distance_km: f64,
    /// Hours any trip of at least `min_distance_km` takes on top of flying time (airports).
    pub trip_overhead_hours: f64,
    /// Multiplier on the score when the event's geo cell is one the user has been seen in
    /// before: a familiar place reached "too fast" means the positions are noisy (a merchant's
    /// position instead of the customer's, IP geolocation flipping between two points of
    /// presence), not that a stranger acts from there.
    pub known_place_factor: f64,
    /// Share of a partition's consecutive position pairs that are impossible at or below which
    /// the detector counts fully: positions are the users' own.
    pub noise_clean_share: f64,
    /// Share at or above which the detector is silent: positions are noise (a merchant's
    /// position, a geolocated IP), and "too fast" says nothing of who acts. Between the two the
    /// score is scaled down linearly in log(share). The share is learned by the partition's
    /// population (`[prior]`), so the detector calibrates itself to each data source.
    pub noise_silent_share: f64,
}

impl Default for ImpossibleTravelConfig {
    fn default() -> Self {
        ImpossibleTravelConfig {
            enabled: true,
            weight: 0.75,
            max_speed_kmh: 1000.0,
            // IP geolocation is often 100-250 km off at city level, and card data carries the
            // merchant's position, not the customer's: two shops of one metro area, minutes
            // apart, are 150-200 km apart. Below this, a jump says nothing of who acts.
            min_distance_km: 250.0,
            trip_overhead_hours: 1.0,
            known_place_factor: 0.0,
            noise_clean_share: 0.002,
            noise_silent_share: 0.05,
        }
    }
}

impl ImpossibleTravelConfig {
    /// Checks the rules of its table, `table` (`detectors.impossible_travel`); the error names the key.
    pub fn validate(&self, table: &str) -> Checked {
        let k = |f: &str| format!("{table}.{f}");
        unit(&k("weight"), self.weight)?;
        positive(&k("max_speed_kmh"), self.max_speed_kmh)?;
        nonneg(&k("trip_overhead_hours"), self.trip_overhead_hours)?;
        unit(&k("known_place_factor"), self.known_place_factor)?;
        unit(&k("noise_clean_share"), self.noise_clean_share)?;
        unit(&k("noise_silent_share"), self.noise_silent_share)?;
        if !(self.noise_clean_share > 0.0 && self.noise_clean_share < self.noise_silent_share) {
            return Err(crate::engine::validate::invalid(
                &k("noise_silent_share"),
                "must satisfy 0 < noise_clean_share < noise_silent_share",
            ));
        }
        nonneg(&k("min_distance_km"), self.min_distance_km)
    }
}

pub use crate::engine::event::haversine_km;

/// See the module docs.
pub struct ImpossibleTravel {
    weight: f64,
    max_speed_kmh: f64,
    min_distance_km: f64,
    overhead_h: f64,
    known_place_factor: f64,
    noise_clean: f64,
    noise_silent: f64,
}

impl ImpossibleTravel {
    /// From config.
    pub fn new(c: &ImpossibleTravelConfig) -> Self {
        ImpossibleTravel {
            weight: c.weight,
            max_speed_kmh: c.max_speed_kmh,
            min_distance_km: c.min_distance_km,
            overhead_h: c.trip_overhead_hours,
            known_place_factor: c.known_place_factor,
            noise_clean: c.noise_clean_share,
            noise_silent: c.noise_silent_share,
        }
    }
}

/// An impossible trip from the last learned position.
struct Trip {
    km: f64,
    secs: f64,
    kmh: f64,
    /// The raw score, before the familiar-place and noise factors.
    s: f64,
}

impl ImpossibleTravel {
    /// The trip from the profile's last learned position to the event's, if it was impossible.
    fn trip(&self, profile: &Profile, facts: &Facts) -> Option<Trip> {
        let (Some(km), Some((_, _, at))) = (facts.km_from_last, profile.last_geo()) else {
            return None;
        };
        if km < self.min_distance_km {
            return None;
        }
        // A one-minute floor keeps the speed finite for simultaneous events.
        // The gap is taken both ways: a late-arriving older event is as far from the last
        // position in time as a newer one.
        let secs = (facts.t as f64 - at as f64).abs().max(60.0);
        let quickest_h = km / self.max_speed_kmh + self.overhead_h;
        let elapsed_h = secs / 3600.0;
        (elapsed_h < quickest_h).then(|| Trip {
            km,
            secs,
            kmh: km / elapsed_h,
            s: 0.5 + (quickest_h / elapsed_h).log10(),
        })
    }

    /// Whether the event and the profile's last learned position form a pair of positions
    /// (`None`: they do not), and whether that trip was impossible: what the partition's
    /// population learns about how noisy positions are.
    pub fn pair(&self, profile: &Profile, facts: &Facts) -> Option<bool> {
        facts.km_from_last?;
        Some(self.trip(profile, facts).is_some())
    }

    /// The factor on the score for a population whose share of impossible pairs is `share`.
    fn reliability(&self, share: f64) -> f64 {
        if share <= self.noise_clean {
            1.0
        } else if share >= self.noise_silent {
            0.0
        } else {
            (self.noise_silent / share).ln() / (self.noise_silent / self.noise_clean).ln()
        }
    }
}

impl Detector for ImpossibleTravel {
    fn code(&self) -> Code {
        Code::ImpossibleTravel
    }

    fn keeps_state(&self) -> bool {
        true
    }

    /// Teaches the population how noisy this partition's positions are.
    fn keep(&self, k: &mut Keep<'_, '_>) {
        if let Some(impossible) = self.pair(k.profile, k.facts) {
            k.population.observe_travel(&k.prior.pop, impossible);
        }
    }

    fn detect(&self, ctx: &Input<'_, '_>, out: &mut Signals) {
        let Some(Trip { km, secs, kmh, s }) = self.trip(ctx.profile, ctx.facts) else {
            return;
        };
        let mut s = s.min(1.0);
        if matches!(ctx.facts.cell, Some((_, true))) {
            s *= self.known_place_factor;
        }
        if let Some(share) = ctx.population.impossible_share(&ctx.prior.pop) {
            s *= self.reliability(share);
        }
        if s <= 0.0 {
            return;
        }
        out.push(
            Code::ImpossibleTravel,
            s,
            self.weight,
            Detail::new(
                |a, f| {
                    write!(
                        f,
                        "{:.0} km from the last position in {} ({:.0} km/h)",
                        a[0],
                        duration(a[1]),
                        a[2]
                    )
                },
                [km, secs, kmh, 0.0],
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    fn det() -> ImpossibleTravel {
        ImpossibleTravel::new(&ImpossibleTravelConfig::default())
    }

    #[test]
    fn haversine_shanghai_london() {
        let km = haversine_km(31.23, 121.47, 51.51, -0.13);
        assert!((km - 9_210.0).abs() < 30.0, "{km}");
        assert_eq!(haversine_km(10.0, 10.0, 10.0, 10.0), 0.0);
    }

    #[test]
    fn noisy_positions_in_the_population_weaken_then_silence_it() {
        let mut k = Kit::new();
        k.history();
        let t = T0 + 29 * DAY + 11 * 3_600_000 + 1_800_000;
        let lagos = r#""geo":{"lat":6.45,"lon":3.39}"#;
        let pp = k.prior.pop;
        let c = ImpossibleTravelConfig::default();
        let mut run_with_share = |share: f64| {
            k.population = crate::engine::baseline::Population::default();
            let n = 10_000;
            for i in 0..n {
                k.population
                    .observe_travel(&pp, (i as f64) < share * n as f64);
            }
            score(&k.run(&det(), t, "login", lagos))
        };
        assert!(
            run_with_share(0.0) >= 0.99,
            "clean positions: full strength"
        );
        assert!(run_with_share(c.noise_clean_share * 0.9) >= 0.99);
        let mid = (c.noise_clean_share * c.noise_silent_share).sqrt();
        let half = run_with_share(mid);
        // (The impossible pairs come first and have decayed a little: slightly above 0.5.)
        assert!((half - 0.5).abs() < 0.05, "halfway in log share: {half}");
        assert_eq!(
            run_with_share(c.noise_silent_share * 1.1),
            0.0,
            "noise: silent"
        );
    }

    #[test]
    fn the_pipeline_pairs_positions_whatever_the_verdict() {
        let mut k = Kit::new();
        let d = det();
        let pair = |k: &mut Kit, t: i64, geo: &str| {
            let s = k.json(t, "login", geo);
            let e = crate::engine::event::parse_event(s.as_bytes()).unwrap();
            let f = k.profile.facts(&k.params, &e);
            d.pair(&k.profile, &f)
        };
        let sh = r#""geo":{"lat":31.23,"lon":121.47}"#;
        assert_eq!(pair(&mut k, T0, sh), None, "no position learned yet");
        k.history();
        let t = T0 + 29 * DAY + 11 * 3_600_000 + 1_800_000;
        assert_eq!(pair(&mut k, t, sh), Some(false));
        assert_eq!(
            pair(&mut k, t, r#""geo":{"lat":6.45,"lon":3.39}"#),
            Some(true)
        );
        assert_eq!(pair(&mut k, t, ""), None, "no position on the event");
    }

    #[test]
    fn fires_on_lagos_half_an_hour_after_shanghai() {
        let mut k = Kit::new();
        k.history();
        // Last position: day 29, 11:00 UTC in Shanghai.
        let t = T0 + 29 * DAY + 11 * 3_600_000 + 1_800_000;
        let s = k.run(&det(), t, "login", r#""geo":{"lat":6.45,"lon":3.39}"#);
        assert!(score(&s) >= 0.99, "{s:?}");
    }

    #[test]
    fn quiet_for_a_late_arriving_older_event() {
        let mut k = Kit::new();
        k.history();
        // Beijing, a day after the last Shanghai event.
        let t = T0 + 30 * DAY + 11 * 3_600_000;
        k.learn(t, "login", r#""geo":{"lat":39.9,"lon":116.4}"#);
        // A Shanghai event from the day before arrives late: a day is plenty for 1,070 km.
        let s = k.run(
            &det(),
            t - DAY + 3_600_000,
            "login",
            r#""geo":{"lat":31.23,"lon":121.47}"#,
        );
        assert!(s.is_empty(), "{s:?}");
    }

    #[test]
    fn a_familiar_place_reached_too_fast_is_noise() {
        let mut k = Kit::new();
        k.history();
        // The user has been in Beijing (1,070 km from Shanghai) before.
        let t = T0 + 29 * DAY + 11 * 3_600_000 + 600_000;
        k.learn(t, "login", r#""geo":{"lat":39.9,"lon":116.4}"#);
        k.learn(t + DAY, "login", r#""geo":{"lat":31.23,"lon":121.47}"#);
        // Ten minutes later "in Beijing" again: a familiar cell, so noise, not a thief.
        let s = k.run(
            &det(),
            t + DAY + 600_000,
            "login",
            r#""geo":{"lat":39.9,"lon":116.4}"#,
        );
        assert!(s.is_empty(), "{s:?}");
        // A never-seen place as far and as fast (Xi'an) still fires.
        let s = k.run(
            &det(),
            t + DAY + 600_000,
            "login",
            r#""geo":{"lat":34.27,"lon":108.95}"#,
        );
        assert!(score(&s) > 0.5, "{s:?}");
        // A jump within the geolocation tolerance (Hangzhou, 170 km) says nothing.
        let s = k.run(
            &det(),
            t + DAY + 600_000,
            "login",
            r#""geo":{"lat":30.27,"lon":120.16}"#,
        );
        assert!(s.is_empty(), "{s:?}");
    }

    #[test]
    fn quiet_for_a_flight() {
        let mut k = Kit::new();
        k.history();
        // Shanghai → London in 13 hours: about 710 km/h.
        let t = T0 + 29 * DAY + 24 * 3_600_000;
        let s = k.run(&det(), t, "login", r#""geo":{"lat":51.51,"lon":-0.13}"#);
        assert!(s.is_empty(), "{s:?}");
    }
}
