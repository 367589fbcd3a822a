//! `NEW_LOCATION`: an event from a geo cell or an IP network (/24, /48) the user has not used.
//!
//! Same surprise model as `NEW_DEVICE`, on the user's rate of new-location events. A new
//! network alone (mobile carriers rotate addresses) counts for 60% of a new geo cell.

use super::NoveltyConfig;
use super::{Code, Detail, Detector, Input, Signals};
use crate::engine::baseline::{Novelty, SetKind};

/// `[detectors.new_location]`: an on/off switch and a weight.
pub type NewLocationConfig = NoveltyConfig;

/// See the module docs.
pub struct NewLocation {
    weight: f64,
}

impl NewLocation {
    /// From config.
    pub fn new(c: &NewLocationConfig) -> Self {
        NewLocation { weight: c.weight }
    }
}

/// Share of the score a new IP network alone carries.
const IP_ONLY_FACTOR: f64 = 0.6;

impl Detector for NewLocation {
    fn code(&self) -> Code {
        Code::NewLocation
    }

    fn detect(&self, ctx: &Input<'_, '_>, out: &mut Signals) {
        if !ctx.facts.has_history {
            return;
        }
        let p = ctx.params;
        let new_cell = matches!(ctx.facts.cell, Some((_, false)))
            && ctx.profile.set_len(p, SetKind::GeoCell) > 0;
        let new_ip = matches!(ctx.facts.ip, Some((_, false)))
            && ctx.profile.set_len(p, SetKind::IpPrefix) > 0;
        if !new_cell && !new_ip {
            return;
        }
        let n = ctx.profile.all_n as f64 * ctx.facts.decay;
        let rate = (ctx.profile.novel_count(Novelty::Location) + 0.5) / (n + 1.0);
        let factor = if new_cell { 1.0 } else { IP_ONLY_FACTOR };
        let s = (1.0 - rate).max(0.0) * ctx.prior.own_weight(n) * factor;
        let km = ctx.facts.km_from_last.unwrap_or(-1.0);
        out.push(
            Code::NewLocation,
            s,
            self.weight,
            Detail::new(
                |a, f| {
                    match (a[0] > 0.0, a[1] > 0.0) {
                        (true, true) => f.write_str("new area and new network")?,
                        (true, false) => f.write_str("new area")?,
                        _ => f.write_str("new network")?,
                    }
                    if a[2] >= 0.0 {
                        write!(f, ", {:.0} km from the last position", a[2])?;
                    }
                    Ok(())
                },
                [new_cell as u8 as f64, new_ip as u8 as f64, km, 0.0],
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    fn det() -> NewLocation {
        NewLocation::new(&crate::engine::detect::DetectorsConfig::default().new_location)
    }

    #[test]
    fn fires_abroad() {
        let mut k = Kit::new();
        k.history();
        let s = k.run(
            &det(),
            T0 + 31 * DAY,
            "login",
            r#""ip":"198.51.100.9","geo":{"lat":6.45,"lon":3.39}"#,
        );
        assert!(score(&s) > 0.8, "{s:?}");
        assert!(detail(&s).contains("new area and new network"));
    }

    #[test]
    fn quiet_at_home() {
        let mut k = Kit::new();
        k.history();
        let s = k.run(
            &det(),
            T0 + 31 * DAY,
            "login",
            r#""ip":"203.0.113.99","geo":{"lat":31.3,"lon":121.4}"#,
        );
        assert!(s.is_empty());
    }
}
