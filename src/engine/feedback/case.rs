//! [`Case`]: what one user's feedback needs to remember: the evidence of their latest alerted
//! events, active snoozes, and failed step-ups. Held beside the profile, only for users with an
//! alert or feedback, and carried in the changelog after the profile's bytes
//! ([`crate::engine::feedback::record::decode_record`]).
//!
//! # Encoding (version 1)
//!
//! Little-endian, field by field:
//!
//! | Size | Field |
//! |---:|---|
//! | 2 | magic `b"WC"` |
//! | 1 | version `1`, or `2` when the record ends with `notified` |
//! | 1 | `failures` |
//! | 4 | `failures_since` |
//! | 1 | number of snoozes `s` (≤ [`SNOOZE_SLOTS`]) |
//! | s × 25 | per snooze: `codes` u32, presence bits u8 (1 device, 2 payee), `device` u64, `payee` u64, `until` u32 |
//! | 1 | number of evidence entries `e` (≤ [`EVIDENCE_SLOTS`]), newest first |
//! | e × (63 + ids) | per entry: `event` u32, `t` u32, action u8, `codes` u32, presence bits u8 (1 device, 2 ip, 4 cell, 8 payee, 16 geo, 32 amount, 64 device known), kind u8, device, ip, cell, payee u64, lat, lon, ln amount f32, currency tag u8, hour u8, then `counterparty_id` and `device_id` as u16 length + UTF-8 (length 0: absent) |
//! | 4 | version 2 only: `notified` u32 (the last `notify_user`, [`crate::engine::notify`]) |

use crate::engine::baseline::Recalled;
use crate::engine::decision::Action;
use crate::engine::event::EventType;
use crate::engine::time::Tick;

/// Alerted events remembered per user for feedback.
pub const EVIDENCE_SLOTS: usize = 2;
/// Snoozes held per user at once.
pub const SNOOZE_SLOTS: usize = 2;
const MAGIC: [u8; 2] = *b"WC";
const VERSION: u8 = 1;
/// Written when `notified` is set; version 1 records stay byte for byte what they were.
const VERSION_NOTIFIED: u8 = 2;

/// A case record that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaseError {
    /// Not a case record.
    #[error("case record: bad magic")]
    BadMagic,
    /// A version this release cannot read.
    #[error("case record: unknown version {0}")]
    UnknownVersion(u8),
    /// Ends early.
    #[error("case record: truncated")]
    Truncated,
    /// A field holds an impossible value.
    #[error("case record: bad {0}")]
    Bad(&'static str),
    /// Bytes after the record.
    #[error("case record: {0} trailing bytes")]
    Trailing(usize),
}

/// An alerted event, remembered so that feedback about it can act on its evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct Alerted {
    /// 32-bit fingerprint of the event id ([`event_fp`]).
    pub event: u32,
    /// Event time.
    pub t: Tick,
    /// The action it got.
    pub action: Action,
    /// The codes that fired, counted or snoozed ([`crate::engine::detect::Code::bit`]).
    pub codes: u32,
    /// Whether its device was already the user's.
    pub device_known: bool,
    /// What the learner needs of it.
    pub recalled: Recalled,
    /// Its counterparty as sent (a confirmed fraud publishes it as a block).
    pub counterparty_id: Option<Box<str>>,
    /// Its device id as sent (published when the device was not the owner's).
    pub device_id: Option<Box<str>>,
}

/// Codes muted for one piece of evidence until a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snooze {
    /// The muted codes ([`crate::engine::detect::Code::bit`]); 0 marks a free slot.
    pub codes: u32,
    /// Only events from this device (hash), if set.
    pub device: Option<u64>,
    /// Only events to this payee (hash), if set.
    pub payee: Option<u64>,
    /// Last tick it applies.
    pub until: Tick,
}

impl Snooze {
    /// Whether it mutes anything for an event at `t` from `device` to `payee`: the same
    /// evidence, i.e. every scope it has matches.
    pub fn applies(&self, t: Tick, device: Option<u64>, payee: Option<u64>) -> bool {
        self.codes != 0
            && t <= self.until
            && self.device.is_none_or(|d| device == Some(d))
            && self.payee.is_none_or(|p| payee == Some(p))
    }
}

/// One user's feedback state.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Case {
    /// Latest alerted events, newest first.
    pub evidence: [Option<Alerted>; EVIDENCE_SLOTS],
    /// Active snoozes.
    pub snoozes: [Snooze; SNOOZE_SLOTS],
    /// Failed step-ups since `failures_since`.
    pub failures: u8,
    /// Start of the failure window.
    pub failures_since: Tick,
    /// When the user was last sent a `notify_user` (0: never), for the rate limit.
    pub notified: Tick,
}

/// The fingerprint a [`Case`] keeps of an event-id hash ([`crate::engine::baseline::keys::event`]).
pub fn event_fp(h: u64) -> u32 {
    ((h ^ (h >> 32)) as u32).max(1)
}

impl Case {
    /// Remembers an alerted event, newest first; the oldest falls off.
    pub fn remember(&mut self, e: Alerted) {
        if let Some(i) = self
            .evidence
            .iter()
            .position(|x| x.as_ref().is_some_and(|x| x.event == e.event))
        {
            // A redelivered event replaces its own entry.
            self.evidence[i] = Some(e);
            return;
        }
        self.evidence.rotate_right(1);
        self.evidence[0] = Some(e);
    }

    /// The remembered event with fingerprint `fp`, no older than `oldest`.
    pub fn find(&self, fp: u32, oldest: Tick) -> Option<&Alerted> {
        self.evidence
            .iter()
            .flatten()
            .find(|e| e.event == fp && e.t >= oldest)
    }

    /// The newest remembered freeze no older than `oldest`.
    pub fn latest_freeze(&self, oldest: Tick) -> Option<&Alerted> {
        self.evidence
            .iter()
            .flatten()
            .find(|e| e.action == Action::Freeze && e.t >= oldest)
    }

    /// Adds a snooze in a free or expired slot (as of `t`), else over the one ending first.
    pub fn snooze(&mut self, s: Snooze, t: Tick) {
        let slot = self
            .snoozes
            .iter()
            .position(|x| x.codes == 0 || x.until < t)
            .unwrap_or_else(|| {
                (0..SNOOZE_SLOTS)
                    .min_by_key(|i| self.snoozes[*i].until)
                    .unwrap_or(0)
            });
        self.snoozes[slot] = s;
    }

    /// The codes muted for an event at `t` from `device` to `payee`.
    pub fn mute_mask(&self, t: Tick, device: Option<u64>, payee: Option<u64>) -> u32 {
        self.snoozes
            .iter()
            .filter(|s| s.applies(t, device, payee))
            .fold(0, |m, s| m | s.codes)
    }

    /// Whether nothing in it can matter at `t` or later: evidence older than `oldest`, every
    /// snooze over, no failure window open since `window_start`.
    pub fn is_spent(&self, t: Tick, oldest: Tick, window_start: Tick, notify_since: Tick) -> bool {
        self.notified < notify_since.max(1)
            && self.evidence.iter().flatten().all(|e| e.t < oldest)
            && self.snoozes.iter().all(|s| s.codes == 0 || s.until < t)
            && (self.failures == 0 || self.failures_since < window_start)
    }

    /// Appends the encoding (see the module docs).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&MAGIC);
        out.push(if self.notified != 0 {
            VERSION_NOTIFIED
        } else {
            VERSION
        });
        out.push(self.failures);
        out.extend_from_slice(&self.failures_since.to_le_bytes());
        let snoozes: Vec<&Snooze> = self.snoozes.iter().filter(|s| s.codes != 0).collect();
        out.push(snoozes.len() as u8);
        for s in snoozes {
            out.extend_from_slice(&s.codes.to_le_bytes());
            out.push(s.device.is_some() as u8 | (s.payee.is_some() as u8) << 1);
            out.extend_from_slice(&s.device.unwrap_or(0).to_le_bytes());
            out.extend_from_slice(&s.payee.unwrap_or(0).to_le_bytes());
            out.extend_from_slice(&s.until.to_le_bytes());
        }
        let evidence: Vec<&Alerted> = self.evidence.iter().flatten().collect();
        out.push(evidence.len() as u8);
        for e in evidence {
            let r = &e.recalled;
            out.extend_from_slice(&e.event.to_le_bytes());
            out.extend_from_slice(&e.t.to_le_bytes());
            out.push(e.action as u8);
            out.extend_from_slice(&e.codes.to_le_bytes());
            let bits = r.device.is_some() as u8
                | (r.ip.is_some() as u8) << 1
                | (r.cell.is_some() as u8) << 2
                | (r.counterparty.is_some() as u8) << 3
                | (r.geo.is_some() as u8) << 4
                | (r.log_amount.is_some() as u8) << 5
                | (e.device_known as u8) << 6;
            out.push(bits);
            out.push(r.kind as u8);
            for h in [r.device, r.ip, r.cell, r.counterparty] {
                out.extend_from_slice(&h.unwrap_or(0).to_le_bytes());
            }
            let (lat, lon) = r.geo.unwrap_or((0.0, 0.0));
            for x in [lat, lon, r.log_amount.unwrap_or(0.0)] {
                out.extend_from_slice(&x.to_bits().to_le_bytes());
            }
            out.push(r.currency_tag);
            out.push(r.hour);
            for id in [&e.counterparty_id, &e.device_id] {
                let b = id.as_deref().unwrap_or("").as_bytes();
                let n = b.len().min(u16::MAX as usize);
                out.extend_from_slice(&(n as u16).to_le_bytes());
                out.extend_from_slice(&b[..n]);
            }
        }
        if self.notified != 0 {
            out.extend_from_slice(&self.notified.to_le_bytes());
        }
    }

    /// Decodes a record written by [`Case::encode`]; the whole of `bytes` must be the record.
    /// Never panics.
    pub fn decode(bytes: &[u8]) -> Result<Case, CaseError> {
        let mut r = Reader::new(bytes, CaseError::Truncated);
        if r.slice(2)? != MAGIC {
            return Err(CaseError::BadMagic);
        }
        let v = r.u8()?;
        if v != VERSION && v != VERSION_NOTIFIED {
            return Err(CaseError::UnknownVersion(v));
        }
        let mut c = Case {
            failures: r.u8()?,
            failures_since: r.u32()?,
            ..Case::default()
        };
        let ns = r.u8()? as usize;
        if ns > SNOOZE_SLOTS {
            return Err(CaseError::Bad("snooze count"));
        }
        for slot in c.snoozes.iter_mut().take(ns) {
            let codes = r.u32()?;
            let bits = r.u8()?;
            let (device, payee) = (r.u64()?, r.u64()?);
            *slot = Snooze {
                codes,
                device: (bits & 1 != 0).then_some(device),
                payee: (bits & 2 != 0).then_some(payee),
                until: r.u32()?,
            };
            if codes == 0 {
                return Err(CaseError::Bad("snooze codes"));
            }
        }
        let ne = r.u8()? as usize;
        if ne > EVIDENCE_SLOTS {
            return Err(CaseError::Bad("evidence count"));
        }
        for slot in c.evidence.iter_mut().take(ne) {
            let event = r.u32()?;
            let t = r.u32()?;
            let action = *Action::ALL
                .get(r.u8()? as usize)
                .ok_or(CaseError::Bad("action"))?;
            let codes = r.u32()?;
            let bits = r.u8()?;
            let kind = *EventType::ALL
                .get(r.u8()? as usize)
                .ok_or(CaseError::Bad("event type"))?;
            let has = |b: u8| bits & (1 << b) != 0;
            let mut hashes = [None; 4];
            for (i, h) in hashes.iter_mut().enumerate() {
                let v = r.u64()?;
                *h = has(i as u8).then_some(v);
            }
            let (lat, lon, amount) = (r.f32()?, r.f32()?, r.f32()?);
            let recalled = Recalled {
                kind,
                device: hashes[0],
                ip: hashes[1],
                cell: hashes[2],
                counterparty: hashes[3],
                geo: has(4).then_some((lat, lon)),
                log_amount: has(5).then_some(amount),
                currency_tag: r.u8()?,
                hour: r.u8()?,
            };
            let mut ids = [None, None];
            for id in ids.iter_mut() {
                let n = r.u16()? as usize;
                let b = r.slice(n)?;
                let s = std::str::from_utf8(b).map_err(|_| CaseError::Bad("id text"))?;
                *id = (n > 0).then(|| Box::<str>::from(s));
            }
            let [counterparty_id, device_id] = ids;
            *slot = Some(Alerted {
                event,
                t,
                action,
                codes,
                device_known: has(6),
                recalled,
                counterparty_id,
                device_id,
            });
        }
        if v == VERSION_NOTIFIED {
            c.notified = r.u32()?;
        }
        if !r.rest().is_empty() {
            return Err(CaseError::Trailing(r.rest().len()));
        }
        Ok(c)
    }

    /// Whether `bytes` starts like a case record.
    pub fn is_case_record(bytes: &[u8]) -> bool {
        bytes.starts_with(&MAGIC)
    }

    /// Approximate heap and inline bytes held, for memory metrics.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Case>()
            + self
                .evidence
                .iter()
                .flatten()
                .map(|e| {
                    e.counterparty_id.as_deref().map_or(0, str::len)
                        + e.device_id.as_deref().map_or(0, str::len)
                })
                .sum::<usize>()
    }
}

type Reader<'a> = crate::engine::bytes::Reader<'a, CaseError>;

#[cfg(test)]
mod tests {
    use super::*;

    fn evidence(event: u32, t: Tick, action: Action) -> Alerted {
        Alerted {
            event,
            t,
            action,
            codes: 0b1010,
            device_known: event % 2 == 0,
            recalled: Recalled {
                kind: EventType::Transfer,
                device: Some(7),
                ip: None,
                cell: Some(u64::MAX),
                counterparty: Some(9),
                geo: Some((31.2, 121.5)),
                log_amount: Some(6.5),
                currency_tag: 2,
                hour: 23,
            },
            counterparty_id: Some("p-991".into()),
            device_id: (event % 2 == 1).then(|| "设备-1".into()),
        }
    }

    #[test]
    fn a_case_round_trips_and_never_panics_on_damage() {
        let mut c = Case {
            failures: 2,
            failures_since: 77,
            ..Case::default()
        };
        c.remember(evidence(1, 100, Action::StepUp));
        c.remember(evidence(2, 200, Action::Freeze));
        c.remember(evidence(3, 300, Action::Review));
        assert_eq!(c.evidence[0].as_ref().unwrap().event, 3, "newest first");
        assert!(c.find(1, 0).is_none(), "the oldest fell off");
        c.snooze(
            Snooze {
                codes: 5,
                device: Some(1),
                payee: None,
                until: 500,
            },
            0,
        );
        let mut out = Vec::new();
        c.encode(&mut out);
        assert!(Case::is_case_record(&out));
        assert_eq!(Case::decode(&out).unwrap(), c);
        // Every truncation and every single-byte change: an error or a case, never a panic.
        for n in 0..out.len() {
            assert!(Case::decode(&out[..n]).is_err());
        }
        for i in 0..out.len() {
            let mut bad = out.clone();
            bad[i] ^= 0xA5;
            let _ = Case::decode(&bad);
        }
        let mut long = out.clone();
        long.push(0);
        assert_eq!(Case::decode(&long), Err(CaseError::Trailing(1)));
    }

    #[test]
    fn snoozes_apply_only_to_the_same_evidence_and_until_their_end() {
        let mut c = Case::default();
        c.snooze(
            Snooze {
                codes: 0b110,
                device: Some(1),
                payee: Some(2),
                until: 100,
            },
            0,
        );
        assert_eq!(c.mute_mask(50, Some(1), Some(2)), 0b110);
        assert_eq!(c.mute_mask(101, Some(1), Some(2)), 0, "over");
        assert_eq!(c.mute_mask(50, Some(1), Some(3)), 0, "another payee");
        assert_eq!(
            c.mute_mask(50, None, Some(2)),
            0,
            "no device is not the device"
        );
        // A payee-only snooze mutes that payee from any device.
        c.snooze(
            Snooze {
                codes: 0b1000,
                device: None,
                payee: Some(3),
                until: 100,
            },
            0,
        );
        assert_eq!(c.mute_mask(50, Some(9), Some(3)), 0b1000);
        // A third snooze replaces the one ending first.
        c.snooze(
            Snooze {
                codes: 1,
                device: None,
                payee: None,
                until: 60,
            },
            0,
        );
        assert_eq!(c.snoozes.iter().filter(|s| s.codes != 0).count(), 2);
        assert!(!c.is_spent(50, 0, 0, 0));
        assert!(c.is_spent(200, 0, 0, 0));
        // A notice holds the case until the rate-limit window has passed.
        c.notified = 190;
        assert!(!c.is_spent(200, 0, 0, 150));
        assert!(c.is_spent(300, 0, 0, 250));
        let mut b = Vec::new();
        c.encode(&mut b);
        assert_eq!(b[2], 2, "version 2 with a notice");
        assert_eq!(Case::decode(&b).unwrap().notified, 190);
    }
}
