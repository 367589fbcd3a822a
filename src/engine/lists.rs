//! Allow and block list entries: the records of the compacted topic `walletguard.lists`
//! (contract v2), keyed `<scope>:<kind>:<value>`.
//!
//! Pure: the pipeline produces entries (a confirmed fraud blocks its payee and a stranger's
//! device, see [`crate::engine::feedback`]); the Kafka adapter publishes them, and every instance reads
//! the whole topic back into one [`Lists`] table (like a Kafka Streams global table) that every
//! partition scores against: a blocked counterparty, device, network or user is evidence
//! (`BLOCKLISTED`, [`crate::engine::detect`]); an allowed one counts as the owner's and mutes novelty.
//!
//! Matching is by the ids events carry: `counterparty` entries match an event's counterparty;
//! `user` entries match the event's own `user_id` and a counterparty that is a wallet user id;
//! `device` entries its `device_id`; `ip_network` entries (an address or a CIDR prefix) its
//! `ip`. A `scope` of a user id limits an entry to that user's events. When both a block and an
//! allow match, the block wins. Expiry is judged by event time, so replay and the service
//! agree; an entry already expired when it is read is not held.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::engine::baseline::keys;
use crate::engine::time::{format_rfc3339, parse_rfc3339, EpochMs};

/// Why a list record was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    /// The value is not a list entry as the contract writes it.
    #[error("list entry is not valid JSON of the contract: {0}")]
    Malformed(String),
    /// `expires_at` or `created_at` is not RFC 3339.
    #[error("list entry {key}: {value:?} is not an RFC 3339 time (expires_at, created_at)")]
    BadExpiry {
        /// The record key.
        key: String,
        /// The text.
        value: String,
    },
    /// An `ip_network` value that is neither an address nor a CIDR prefix.
    #[error("list entry {key}: {value:?} is not an IP address or CIDR prefix")]
    BadNetwork {
        /// The record key.
        key: String,
        /// The text.
        value: String,
    },
    /// A tombstone without a key cannot delete anything.
    #[error("list record without a key")]
    NoKey,
}

/// What an entry names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListKind {
    /// A payee, merchant, phone number or card token.
    Counterparty,
    /// A device id.
    Device,
    /// An IP network (an address or a CIDR prefix).
    IpNetwork,
    /// A user id.
    User,
}

impl ListKind {
    /// Every kind, in wire order.
    pub const ALL: [ListKind; 4] = [
        ListKind::Counterparty,
        ListKind::Device,
        ListKind::IpNetwork,
        ListKind::User,
    ];

    /// Position in [`ListKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ListKind::Counterparty => "counterparty",
            ListKind::Device => "device",
            ListKind::IpNetwork => "ip_network",
            ListKind::User => "user",
        }
    }
}

/// Which list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListName {
    /// Strong evidence against whoever uses it.
    Block,
    /// Evidence of the owner.
    Allow,
}

/// One list entry as the contract writes it. Unknown fields are ignored (a list written by a
/// newer tool still blocks), a wrong type or a missing required field is an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListEntry {
    /// What `value` names.
    pub kind: ListKind,
    /// The id, as events carry it.
    pub value: String,
    /// `global`, or the `user_id` the entry applies to.
    pub scope: String,
    /// `block` or `allow`.
    pub list: ListName,
    /// Why, for people.
    #[serde(default)]
    pub reason: String,
    /// When it stops applying, RFC 3339; absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// When it starts applying, RFC 3339 (walletguard writes the event time of the verdict
    /// that produced it); absent: always. Why: a crash replays events scored before the
    /// verdict, and they must be scored as they were, without the block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
}

impl ListEntry {
    /// A global block of `value` from `created_ms` until `expires_ms` (event times).
    pub fn global_block(
        kind: ListKind,
        value: &str,
        reason: &str,
        created_ms: EpochMs,
        expires_ms: EpochMs,
    ) -> Self {
        ListEntry {
            kind,
            value: value.to_owned(),
            scope: "global".into(),
            list: ListName::Block,
            reason: reason.to_owned(),
            expires_at: Some(format_rfc3339(expires_ms)),
            created_at: Some(format_rfc3339(created_ms)),
        }
    }

    /// The record key: `<scope>:<kind>:<value>`.
    pub fn key(&self) -> String {
        format!("{}:{}:{}", self.scope, self.kind.as_str(), self.value)
    }

    /// The record value (one JSON object).
    pub fn to_json(&self) -> Vec<u8> {
        // Plain strings and enums: serialising into a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Bits of [`Hits`]: one per kind and list.
pub type Hits = u8;

/// The [`Hits`] bit of a match of `kind` on `list`: blocks in bits 0–3, allows in 4–7.
pub fn hit_bit(kind: ListKind, list: ListName) -> Hits {
    1 << (kind.index() as u8 + if list == ListName::Allow { 4 } else { 0 })
}

/// One held entry, as matching needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Item {
    list: ListName,
    /// `None`: global; otherwise the user key of the scope.
    scope: Option<u64>,
    /// Last event time it applies to.
    expires_ms: Option<EpochMs>,
    /// First event time it applies to.
    created_ms: Option<EpochMs>,
    /// Hash of the record key (an upsert of the same key replaces it).
    key: u64,
}

impl Item {
    fn applies(&self, user_key: u64, ts_ms: EpochMs) -> bool {
        self.scope.is_none_or(|s| s == user_key)
            && self.expires_ms.is_none_or(|e| ts_ms <= e)
            && self.created_ms.is_none_or(|c| ts_ms >= c)
    }
}

/// Where a record key's entry is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Slot {
    /// By kind and value hash.
    Value(ListKind, u64),
    /// An IP network: prefix length (IPv4 as mapped IPv6, 96 + bits) and masked address.
    Net(u8, u128),
}

/// What a record did to the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListChange {
    /// An entry was added or replaced.
    Upserted,
    /// A tombstone removed an entry (or found none).
    Removed,
    /// The entry had expired already and is not held.
    Expired,
}

/// The table of list entries every partition scores against (see the module docs). Cheap to
/// look up: nothing at all when empty, otherwise a few hash probes per event.
#[derive(Debug, Clone, Default)]
pub struct Lists {
    values: HashMap<(ListKind, u64), Vec<Item>>,
    nets: HashMap<(u8, u128), Vec<Item>>,
    /// Distinct prefix lengths held, ascending.
    net_lens: Vec<u8>,
    keys: HashMap<u64, Slot>,
    /// Entries held by kind (wire order) and list (block, allow).
    counts: [[u64; 2]; 4],
}

fn key_hash(key: &str) -> u64 {
    keys::counterparty(key) ^ 0x4c49_5354
}

/// The value hash entries of `kind` are matched by: counterparties and user ids share one,
/// so a `user` entry also matches a transfer to that wallet user.
fn value_hash(kind: ListKind, value: &str) -> u64 {
    match kind {
        ListKind::Device => keys::device(value),
        _ => keys::counterparty(value),
    }
}

/// An address as a 128-bit number (IPv4 mapped into IPv6) and its full prefix length.
fn ip_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => u128::from(v4.to_ipv6_mapped()),
            None => u128::from(a),
        },
    }
}

fn mask(bits: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        bits & (u128::MAX << (128 - u32::from(len.min(128))))
    }
}

/// Parses `a.b.c.d`, `a.b.c.d/n`, an IPv6 address or `x::/n` into (prefix length over the
/// mapped 128 bits, masked address).
fn parse_network(v: &str) -> Option<(u8, u128)> {
    let (addr, len) = match v.split_once('/') {
        Some((a, l)) => (a, Some(l.parse::<u8>().ok()?)),
        None => (v, None),
    };
    let ip: IpAddr = addr.trim().parse().ok()?;
    let v4 = matches!(ip, IpAddr::V4(_));
    let full = if v4 { 32 } else { 128 };
    let len = len.unwrap_or(full);
    if len > full {
        return None;
    }
    let len = if v4 { 96 + len } else { len };
    Some((len, mask(ip_bits(ip), len)))
}

impl Lists {
    /// An empty table.
    pub fn new() -> Lists {
        Lists::default()
    }

    /// True when nothing is held (the pipeline then skips every lookup).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Entries held of `kind` on `list`.
    pub fn count(&self, kind: ListKind, list: ListName) -> u64 {
        self.counts[kind.index()][(list == ListName::Allow) as usize]
    }

    fn count_mut(&mut self, kind: ListKind, list: ListName) -> &mut u64 {
        &mut self.counts[kind.index()][(list == ListName::Allow) as usize]
    }

    /// Applies one record of the lists topic (or line of a lists file): a `None` value is a
    /// tombstone that deletes `key`; otherwise the entry is upserted under `key` (its own
    /// `<scope>:<kind>:<value>` when the record has none). An entry that expired before
    /// `now_ms` is removed rather than held.
    pub fn apply_record(
        &mut self,
        key: Option<&str>,
        value: Option<&[u8]>,
        now_ms: EpochMs,
    ) -> Result<ListChange, ListError> {
        let Some(value) = value else {
            let key = key.ok_or(ListError::NoKey)?;
            self.remove(key);
            return Ok(ListChange::Removed);
        };
        let entry: ListEntry =
            serde_json::from_slice(value).map_err(|e| ListError::Malformed(e.to_string()))?;
        let key = key.map_or_else(|| entry.key(), str::to_owned);
        self.upsert(&key, &entry, now_ms)
    }

    /// Adds or replaces the entry under record key `key`.
    pub fn upsert(
        &mut self,
        key: &str,
        entry: &ListEntry,
        now_ms: EpochMs,
    ) -> Result<ListChange, ListError> {
        let time = |t: &Option<String>| -> Result<Option<EpochMs>, ListError> {
            t.as_deref()
                .map(|s| {
                    parse_rfc3339(s).map_err(|_| ListError::BadExpiry {
                        key: key.to_owned(),
                        value: s.to_owned(),
                    })
                })
                .transpose()
        };
        let (expires_ms, created_ms) = (time(&entry.expires_at)?, time(&entry.created_at)?);
        let slot = match entry.kind {
            ListKind::IpNetwork => {
                let (len, net) =
                    parse_network(&entry.value).ok_or_else(|| ListError::BadNetwork {
                        key: key.to_owned(),
                        value: entry.value.clone(),
                    })?;
                Slot::Net(len, net)
            }
            k => Slot::Value(k, value_hash(k, &entry.value)),
        };
        self.remove(key);
        if expires_ms.is_some_and(|e| e < now_ms) {
            return Ok(ListChange::Expired);
        }
        let item = Item {
            list: entry.list,
            scope: (entry.scope != "global").then(|| keys::user_key(&entry.scope)),
            expires_ms,
            created_ms,
            key: key_hash(key),
        };
        match slot {
            Slot::Value(k, h) => self.values.entry((k, h)).or_default().push(item),
            Slot::Net(len, net) => {
                self.nets.entry((len, net)).or_default().push(item);
                if let Err(i) = self.net_lens.binary_search(&len) {
                    self.net_lens.insert(i, len);
                }
            }
        }
        self.keys.insert(item.key, slot);
        *self.count_mut(entry.kind, entry.list) += 1;
        Ok(ListChange::Upserted)
    }

    /// Deletes the entry under record key `key`; false when there was none.
    pub fn remove(&mut self, key: &str) -> bool {
        let kh = key_hash(key);
        let Some(slot) = self.keys.remove(&kh) else {
            return false;
        };
        let (items, kind) = match slot {
            Slot::Value(k, h) => (self.values.get_mut(&(k, h)), k),
            Slot::Net(len, net) => (self.nets.get_mut(&(len, net)), ListKind::IpNetwork),
        };
        let mut removed = None;
        let mut now_empty = false;
        if let Some(items) = items {
            if let Some(i) = items.iter().position(|it| it.key == kh) {
                removed = Some(items.swap_remove(i).list);
            }
            now_empty = items.is_empty();
        }
        if now_empty {
            match slot {
                Slot::Value(k, h) => {
                    self.values.remove(&(k, h));
                }
                Slot::Net(len, net) => {
                    self.nets.remove(&(len, net));
                    if !self.nets.keys().any(|(l, _)| *l == len) {
                        self.net_lens.retain(|l| *l != len);
                    }
                }
            }
        }
        if let Some(list) = removed {
            let c = self.count_mut(kind, list);
            *c = c.saturating_sub(1);
        }
        removed.is_some()
    }

    /// Removes every entry expired before `now_ms`; returns how many.
    pub fn purge_expired(&mut self, now_ms: EpochMs) -> usize {
        let mut gone = Vec::new();
        for (slot_items, kind) in self
            .values
            .iter()
            .map(|((k, _), v)| (v, *k))
            .chain(self.nets.values().map(|v| (v, ListKind::IpNetwork)))
        {
            for it in slot_items {
                if it.expires_ms.is_some_and(|e| e < now_ms) {
                    gone.push((it.key, kind, it.list));
                }
            }
        }
        for (kh, _, _) in &gone {
            if let Some(slot) = self.keys.remove(kh) {
                let items = match slot {
                    Slot::Value(k, h) => self.values.get_mut(&(k, h)),
                    Slot::Net(len, net) => self.nets.get_mut(&(len, net)),
                };
                if let Some(items) = items {
                    items.retain(|it| it.key != *kh);
                }
            }
        }
        self.values.retain(|_, v| !v.is_empty());
        self.nets.retain(|_, v| !v.is_empty());
        let nets = &self.nets;
        self.net_lens.retain(|l| nets.keys().any(|(x, _)| x == l));
        for (_, kind, list) in &gone {
            let c = self.count_mut(*kind, *list);
            *c = c.saturating_sub(1);
        }
        gone.len()
    }

    fn best(items: Option<&Vec<Item>>, user_key: u64, ts_ms: EpochMs) -> Option<ListName> {
        let mut found = None;
        for it in items.into_iter().flatten() {
            if it.applies(user_key, ts_ms) {
                if it.list == ListName::Block {
                    return Some(ListName::Block);
                }
                found = Some(ListName::Allow);
            }
        }
        found
    }

    /// The list a value of `kind` is on for `user_key`'s event at `ts_ms` (block wins).
    pub fn find(
        &self,
        kind: ListKind,
        value: &str,
        user_key: u64,
        ts_ms: EpochMs,
    ) -> Option<ListName> {
        if self.is_empty() {
            return None;
        }
        Self::best(
            self.values.get(&(kind, value_hash(kind, value))),
            user_key,
            ts_ms,
        )
    }

    /// The list a counterparty is on, as a counterparty or as a wallet user (block wins).
    pub fn find_counterparty(
        &self,
        value: &str,
        user_key: u64,
        ts_ms: EpochMs,
    ) -> Option<ListName> {
        if self.is_empty() {
            return None;
        }
        let h = keys::counterparty(value);
        let a = Self::best(
            self.values.get(&(ListKind::Counterparty, h)),
            user_key,
            ts_ms,
        );
        let b = Self::best(self.values.get(&(ListKind::User, h)), user_key, ts_ms);
        match (a, b) {
            (Some(ListName::Block), _) | (_, Some(ListName::Block)) => Some(ListName::Block),
            (a, b) => a.or(b),
        }
    }

    /// The list the narrowest-to-widest networks holding `ip` are on (block wins).
    pub fn find_ip(&self, ip: IpAddr, user_key: u64, ts_ms: EpochMs) -> Option<ListName> {
        if self.nets.is_empty() {
            return None;
        }
        let bits = ip_bits(ip);
        let v4 = matches!(ip, IpAddr::V4(_)) || bits >> 32 == 0xffff;
        let mut found = None;
        for &len in &self.net_lens {
            // An IPv4 entry (96 + n bits) matches IPv4 events only, and the reverse.
            if (len >= 96) != v4 && len != 0 {
                continue;
            }
            match Self::best(self.nets.get(&(len, mask(bits, len))), user_key, ts_ms) {
                Some(ListName::Block) => return Some(ListName::Block),
                Some(ListName::Allow) => found = Some(ListName::Allow),
                None => {}
            }
        }
        found
    }
}

impl Lists {
    /// Every match of event `ev` (of user `user_key`): its counterparty (as a counterparty or a
    /// wallet user), its device, its address, and its own user id.
    pub fn match_event(&self, ev: &crate::engine::event::Event<'_>, user_key: u64) -> Hits {
        if self.is_empty() {
            return 0;
        }
        let t = ev.ts_ms;
        let mut hits = 0;
        let mut add = |kind: ListKind, found: Option<ListName>| {
            if let Some(list) = found {
                hits |= hit_bit(kind, list);
            }
        };
        if let Some(c) = ev.counterparty.as_deref() {
            add(
                ListKind::Counterparty,
                self.find_counterparty(c, user_key, t),
            );
        }
        if let Some(d) = ev.device_id.as_deref() {
            add(
                ListKind::Device,
                self.find(ListKind::Device, d, user_key, t),
            );
        }
        if let Some(ip) = ev.ip {
            add(ListKind::IpNetwork, self.find_ip(ip, user_key, t));
        }
        add(
            ListKind::User,
            self.find(ListKind::User, &ev.user_id, user_key, t),
        );
        hits
    }
}

/// The table shared by every partition of a process: one master copy that the list reader and
/// the partitions' own blocks both update under a lock, and an immutable snapshot that
/// partitions take once per batch (a pointer copy; the table is rebuilt only when it changes,
/// which is rare next to events).
#[derive(Debug, Default)]
pub struct ListsCell {
    master: std::sync::Mutex<Lists>,
    snapshot: std::sync::RwLock<std::sync::Arc<Lists>>,
    /// The newest event time scored in this process (see [`ListsCell::clock`]).
    clock: std::sync::atomic::AtomicI64,
}

impl ListsCell {
    /// An empty table.
    pub fn new() -> ListsCell {
        ListsCell::default()
    }

    /// The clock expiry is judged by when entries are read or purged: the newest event time
    /// scored in this process (0 before the first). Event time, like every lookup, so that a
    /// replay of old events and the service agree on what has expired.
    pub fn clock(&self) -> EpochMs {
        self.clock.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Advances [`ListsCell::clock`] to `ms` if later.
    pub fn observe(&self, ms: EpochMs) {
        self.clock
            .fetch_max(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// The current snapshot.
    pub fn get(&self) -> std::sync::Arc<Lists> {
        // Poisoned locks hold whole values here (every write is one assignment).
        match self.snapshot.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Changes the table with `f` and publishes a new snapshot when `f` says it changed.
    pub fn update<R>(&self, f: impl FnOnce(&mut Lists) -> (R, bool)) -> R {
        let mut m = self.master.lock().unwrap_or_else(|p| p.into_inner());
        let (r, changed) = f(&mut m);
        if changed {
            let snap = std::sync::Arc::new(m.clone());
            match self.snapshot.write() {
                Ok(mut g) => *g = snap,
                Err(p) => *p.into_inner() = snap,
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_read_and_write_the_contract_example() {
        let text = r#"{"kind":"counterparty","value":"p-991","scope":"global","list":"block","reason":"confirmed mule","expires_at":"2027-03-01T00:00:00Z"}"#;
        let e: ListEntry = serde_json::from_str(text).unwrap();
        assert_eq!(e.key(), "global:counterparty:p-991");
        assert_eq!(e.list, ListName::Block);
        let again: ListEntry = serde_json::from_slice(&e.to_json()).unwrap();
        assert_eq!(again, e);
        let b = ListEntry::global_block(ListKind::Device, "d-1", "x", 0, 1_800_000_000_000);
        assert_eq!(b.key(), "global:device:d-1");
        assert_eq!(b.expires_at.as_deref(), Some("2027-01-15T08:00:00.000Z"));
    }

    fn entry(kind: &str, value: &str, scope: &str, list: &str, expires: Option<&str>) -> Vec<u8> {
        let mut v = serde_json::json!({"kind": kind, "value": value, "scope": scope, "list": list});
        if let Some(e) = expires {
            v["expires_at"] = e.into();
        }
        v.to_string().into_bytes()
    }

    const NOW: EpochMs = 1_800_000_000_000;

    #[test]
    fn blocks_allows_scopes_and_expiry() {
        let mut l = Lists::new();
        assert!(l.is_empty());
        let u1 = keys::user_key("u1");
        let u2 = keys::user_key("u2");
        let r = |l: &mut Lists, b: Vec<u8>| l.apply_record(None, Some(&b), NOW).unwrap();
        r(
            &mut l,
            entry(
                "counterparty",
                "p-991",
                "global",
                "block",
                Some("2027-03-01T00:00:00Z"),
            ),
        );
        r(&mut l, entry("device", "d-7", "u1", "allow", None));
        r(&mut l, entry("user", "mule-1", "global", "block", None));
        assert_eq!(l.len(), 3);
        assert_eq!(l.count(ListKind::Counterparty, ListName::Block), 1);
        assert_eq!(l.count(ListKind::Device, ListName::Allow), 1);
        // Global block, until its expiry (event time).
        assert_eq!(l.find_counterparty("p-991", u2, NOW), Some(ListName::Block));
        let after = parse_rfc3339("2027-03-01T00:00:01Z").unwrap();
        assert_eq!(l.find_counterparty("p-991", u2, after), None);
        // Not before created_at.
        let mut since =
            ListEntry::global_block(ListKind::Counterparty, "p-5", "x", NOW, NOW + 1000);
        l.upsert(&since.key(), &since, NOW).unwrap();
        assert_eq!(l.find_counterparty("p-5", u1, NOW - 1), None);
        assert_eq!(l.find_counterparty("p-5", u1, NOW), Some(ListName::Block));
        since.created_at = None;
        l.upsert(&since.key(), &since, NOW).unwrap();
        assert_eq!(
            l.find_counterparty("p-5", u1, NOW - 1),
            Some(ListName::Block)
        );
        assert!(l.remove(&since.key()));
        // A blocked wallet user matches as a counterparty too.
        assert_eq!(
            l.find_counterparty("mule-1", u1, NOW),
            Some(ListName::Block)
        );
        // User scope: u1's allow does not reach u2.
        assert_eq!(
            l.find(ListKind::Device, "d-7", u1, NOW),
            Some(ListName::Allow)
        );
        assert_eq!(l.find(ListKind::Device, "d-7", u2, NOW), None);
        // A block beside an allow wins.
        r(&mut l, entry("device", "d-7", "global", "block", None));
        assert_eq!(
            l.find(ListKind::Device, "d-7", u1, NOW),
            Some(ListName::Block)
        );
        // A tombstone deletes by key; the other entry for the same device stays.
        assert_eq!(
            l.apply_record(Some("global:device:d-7"), None, NOW)
                .unwrap(),
            ListChange::Removed
        );
        assert_eq!(
            l.find(ListKind::Device, "d-7", u1, NOW),
            Some(ListName::Allow)
        );
        assert_eq!(l.count(ListKind::Device, ListName::Block), 0);
        // Upserting the same key replaces, never duplicates.
        r(&mut l, entry("device", "d-7", "u1", "block", None));
        assert_eq!(l.count(ListKind::Device, ListName::Allow), 0);
        assert_eq!(
            l.find(ListKind::Device, "d-7", u1, NOW),
            Some(ListName::Block)
        );
        // Already expired when read: not held; purge drops what expired since.
        let old = entry(
            "counterparty",
            "p-1",
            "global",
            "block",
            Some("2020-01-01T00:00:00Z"),
        );
        assert_eq!(
            l.apply_record(None, Some(&old), NOW).unwrap(),
            ListChange::Expired
        );
        assert_eq!(l.find_counterparty("p-1", u1, 0), None);
        assert_eq!(l.purge_expired(after), 1);
        assert_eq!(l.count(ListKind::Counterparty, ListName::Block), 0);
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn networks_match_by_prefix() {
        let mut l = Lists::new();
        let u = keys::user_key("u");
        for (v, list) in [
            ("10.1.0.0/16", "block"),
            ("10.1.2.3", "allow"),
            ("2001:db8::/32", "block"),
        ] {
            l.apply_record(
                None,
                Some(&entry("ip_network", v, "global", list, None)),
                NOW,
            )
            .unwrap();
        }
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(l.find_ip(ip("10.1.200.9"), u, NOW), Some(ListName::Block));
        assert_eq!(
            l.find_ip(ip("10.1.2.3"), u, NOW),
            Some(ListName::Block),
            "block wins"
        );
        assert_eq!(l.find_ip(ip("10.2.0.1"), u, NOW), None);
        assert_eq!(
            l.find_ip(ip("::ffff:10.1.9.9"), u, NOW),
            Some(ListName::Block)
        );
        assert_eq!(
            l.find_ip(ip("2001:db8:1::5"), u, NOW),
            Some(ListName::Block)
        );
        assert_eq!(l.find_ip(ip("2001:db9::5"), u, NOW), None);
        assert!(l.remove("global:ip_network:10.1.0.0/16"));
        assert_eq!(l.find_ip(ip("10.1.2.3"), u, NOW), Some(ListName::Allow));
        let bad = entry("ip_network", "10.1.0.0/40", "global", "block", None);
        assert!(matches!(
            l.apply_record(None, Some(&bad), NOW),
            Err(ListError::BadNetwork { .. })
        ));
        assert!(matches!(
            l.apply_record(None, Some(b"{\"kind\":\"card\"}"), NOW),
            Err(ListError::Malformed(_))
        ));
        assert_eq!(l.apply_record(None, None, NOW), Err(ListError::NoKey));
    }
}
