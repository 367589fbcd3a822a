//! `BLOCKLISTED`: the event touches something on a block list of `walletguard.lists`
//! ([`crate::engine::lists`]): money out to a blocked counterparty or wallet user, a blocked device,
//! an address in a blocked network, or money out by a blocked user.
//!
//! Why a near-certain weight for payees and devices: an entry there is a confirmed fraud's
//! mule or a thief's phone, found by an analyst or by another user's case; paying it again is
//! what the block exists to stop. A network is shared by many (carrier NAT, office Wi-Fi), so
//! its entries weigh less by default and inform rather than freeze on their own.
//!
//! The pipeline does the lookups once per event (nothing when no list is held) and passes the
//! matches in [`Input::listed`]; this detector only weighs them.

use serde::{Deserialize, Serialize};

use super::{Code, Detail, Detector, Input, Signals};
use crate::engine::lists::{hit_bit, ListKind, ListName};
use crate::engine::validate::{unit, Checked};

/// `[detectors.blocklisted]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlocklistedConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Weight of a blocked counterparty, device or user, in [0, 1].
    pub weight: f64,
    /// Weight of a blocked IP network, in [0, 1].
    pub network_weight: f64,
}

impl Default for BlocklistedConfig {
    fn default() -> Self {
        BlocklistedConfig {
            enabled: true,
            weight: 0.99,
            network_weight: 0.5,
        }
    }
}

impl BlocklistedConfig {
    /// Checks the rules of the table at `table`.
    pub fn validate(&self, table: &str) -> Checked {
        unit(&format!("{table}.weight"), self.weight)?;
        unit(&format!("{table}.network_weight"), self.network_weight)
    }
}

/// See the module docs.
pub struct Blocklisted {
    weight: f64,
    network_weight: f64,
}

impl Blocklisted {
    /// From config.
    pub fn new(c: &BlocklistedConfig) -> Self {
        Blocklisted {
            weight: c.weight,
            network_weight: c.network_weight,
        }
    }
}

/// The kinds, in the order a detail names them.
const KINDS: [(ListKind, &str); 4] = [
    (ListKind::Counterparty, "payee"),
    (ListKind::User, "wallet user"),
    (ListKind::Device, "device"),
    (ListKind::IpNetwork, "network"),
];

impl Detector for Blocklisted {
    fn code(&self) -> Code {
        Code::Blocklisted
    }

    fn detect(&self, ctx: &Input<'_, '_>, out: &mut Signals) {
        let hits = ctx.listed & 0x0f;
        if hits == 0 {
            return;
        }
        let money_out = ctx.ev.kind.is_money_out();
        let mut weight: f64 = 0.0;
        let mut which = [0.0; 4];
        for (i, (kind, _)) in KINDS.iter().enumerate() {
            if hits & hit_bit(*kind, ListName::Block) == 0 {
                continue;
            }
            // A blocked payee or user matters when money goes; a device or network always
            // (a confirmed thief's phone logging in to another account is a takeover).
            let w = match kind {
                ListKind::Counterparty | ListKind::User if !money_out => continue,
                ListKind::IpNetwork => self.network_weight,
                _ => self.weight,
            };
            which[i] = 1.0;
            weight = weight.max(w);
        }
        if weight <= 0.0 {
            return;
        }
        out.push(
            Code::Blocklisted,
            1.0,
            weight,
            Detail::new(
                |a, f| {
                    f.write_str("on a block list:")?;
                    let mut sep = " ";
                    for (i, (_, name)) in KINDS.iter().enumerate() {
                        if a[i] > 0.0 {
                            write!(f, "{sep}{name}")?;
                            sep = ", ";
                        }
                    }
                    Ok(())
                },
                which,
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    fn det() -> Blocklisted {
        Blocklisted::new(&crate::engine::detect::DetectorsConfig::default().blocklisted)
    }

    #[test]
    fn weighs_blocks_by_kind_and_needs_money_out_for_payees() {
        let mut k = Kit::new();
        k.history();
        let payee = hit_bit(ListKind::Counterparty, ListName::Block);
        k.listed = payee;
        let s = k.run(
            &det(),
            T0 + 31 * DAY,
            "transfer",
            r#""amount":50,"counterparty":"p-9""#,
        );
        assert_eq!(score(&s), 1.0);
        assert_eq!(s.iter().next().map(|s| s.weight), Some(0.99));
        assert!(detail(&s).contains("payee"), "{}", detail(&s));
        // Not money out: a blocked payee named on a login is nothing.
        let s = k.run(&det(), T0 + 31 * DAY, "login", "");
        assert_eq!(score(&s), 0.0);
        // A network weighs less; an allow is no evidence here.
        k.listed = hit_bit(ListKind::IpNetwork, ListName::Block)
            | hit_bit(ListKind::Device, ListName::Allow);
        let s = k.run(&det(), T0 + 31 * DAY, "login", "");
        assert_eq!(s.iter().next().map(|s| s.weight), Some(0.5));
        k.listed = hit_bit(ListKind::Device, ListName::Allow);
        assert_eq!(score(&k.run(&det(), T0 + 31 * DAY, "login", "")), 0.0);
    }
}
