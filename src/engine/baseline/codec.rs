//! Versioned binary encoding of [`Profile`] for the compacted changelog topic
//! `walletguard.profiles`: one record per user, keyed by user id, whose value is the encoded
//! profile. This module owns the value format only; the key and the topic are the Kafka
//! adapter's business.
//!
//! Records outlive releases: a compacted topic keeps a user's last record for as long as the
//! user is idle, and a new release restores its state from records an old one wrote. So the
//! format is written field by field with `to_le_bytes`, in a fixed order documented below,
//! never by copying or transmuting the struct's memory: the bytes do not depend on the
//! compiler, the target's endianness, padding, or how `Profile` is laid out in memory, and
//! reordering or adding struct fields cannot silently change them. A format change gets a
//! new [`FORMAT_VERSION`], and [`decode`] keeps reading every older version.
//!
//! # Format version 7 (current)
//!
//! [`ENCODED_LEN`] = 234 bytes: version 6 below with `7` in the version byte and the hour
//! histogram one byte per hour ([`super::HOUR_UNIT`] per event) instead of two. Every field
//! after `hours` keeps its version-6 order, 24 bytes earlier:
//!
//! | Offset | Size    | Field                                                            |
//! |-------:|--------:|------------------------------------------------------------------|
//! |      0 |  8      | magic, version `7`, set lengths (as in version 1)                |
//! |      8 | 14 × u32| `slots` (fingerprints)                                           |
//! |     64 | 94      | `last_seen` … `tiny_new`, as at offsets 64–157 of version 6      |
//! |    158 | 24 × u8 | `hours`                                                          |
//! |    182 | 52      | `flags` … `odd_share`, as at offsets 206–257 of version 6        |
//!
//! Records of versions 1–6 decode with their two-byte histogram scaled to bytes
//! ([`hours_from_u16`]): the same proportions, to within a sixteenth of an event.
//!
//! # Format version 6
//!
//! [`V6_LEN`] = 258 bytes: version 5 below with `6` in the version byte, followed by the
//! two bytes of `HABIT_RUN`'s state. Records of versions 1–5 decode with no run under way and
//! no learned share (the detector starts from its prior):
//!
//! | Offset | Size    | Field                                                            |
//! |-------:|--------:|------------------------------------------------------------------|
//! |    256 |  u8     | `run` (run evidence, eighths of a nat)                           |
//! |    257 |  u8     | `odd_share` (share of outflows out of habit, 255ths; 0 = none)   |
//!
//! # Format version 5
//!
//! [`V5_LEN`] = 256 bytes: version 4 with `5` in the version byte and each of the 14
//! slots written as its 32-bit fingerprint ([`super::slot_fp`]) instead of the whole
//! 64-bit hash. Every field after the slots keeps its version-4 order, 56 bytes earlier:
//!
//! | Offset | Size    | Field                                                            |
//! |-------:|--------:|------------------------------------------------------------------|
//! |      0 |  8      | magic, version `5`, set lengths (as in version 1)                |
//! |      8 | 14 × u32| `slots` (fingerprints)                                           |
//! |     64 | 143     | `last_seen` … `flags`, as at offsets 120–262 of version 1        |
//! |    207 | 33      | `payees_seen` … `young_n`, as at offsets 263–295 of version 3     |
//! |    240 | 4 × u32 | `recent_ids`, newest first                                       |
//!
//! Records of versions 1–4 decode with each non-empty 64-bit slot folded to its fingerprint,
//! so a profile restored from an older changelog knows exactly what it knew before.
//!
//! # Format version 4
//!
//! [`V4_LEN`] = 312 bytes: the 296 bytes of version 3 below (with `4` in the version
//! byte), followed by the user's recent event-id fingerprints (the duplicate memory, so that a
//! profile restored after a crash recognises a redelivered event exactly as the one it
//! replaces would have):
//!
//! | Offset | Size    | Field                                                            |
//! |-------:|--------:|------------------------------------------------------------------|
//! |    296 | 4 × u32 | `recent_ids`, newest first                                       |
//!
//! # Format version 3
//!
//! [`V3_LEN`] = 296 bytes: the 263 bytes of version 1 below (with `3` in the version
//! byte), followed by the payee-age fields, with two young-payee watch slots. It decodes with an
//! empty duplicate memory:
//!
//! | Offset | Size    | Field                                                            |
//! |-------:|--------:|------------------------------------------------------------------|
//! |    263 | 2 × u64 | `payees_seen` (current generation, previous)                      |
//! |    279 | 2 × u16 | `young_fp` (slot 0, slot 1)                                      |
//! |    283 | 2 × u16 | `young_sum`                                                      |
//! |    287 | 2 × u32 | `young_first`                                                    |
//! |    295 |  u8     | `young_n` (slot 0 in the low 4 bits, slot 1 in the high 4 bits)  |
//!
//! # Format version 2
//!
//! [`V2_LEN`] = 288 bytes: the 263 bytes of version 1 below (with `2` in the version byte),
//! followed by the payee-age fields of a one-slot watch. It decodes into watch slot 0 (its
//! count saturated at 15), with slot 1 free:
//!
//! | Offset | Size    | Field                                                            |
//! |-------:|--------:|------------------------------------------------------------------|
//! |    263 | 2 × u64 | `payees_seen` (current generation, previous)                      |
//! |    279 |  u16    | `young_fp`                                                       |
//! |    281 |  u16    | `young_sum`                                                      |
//! |    283 |  u32    | `young_first`                                                    |
//! |    287 |  u8     | `young_n`                                                        |
//!
//! A version-1 record decodes with no young payee and with its paid-payee filter seeded from
//! the exact counterparty set, so payees a user already paid are not taken for new ones after
//! an upgrade.
//!
//! # Format version 1
//!
//! [`V1_LEN`] = 263 bytes. Integers are little-endian; `f32` fields are their IEEE 754
//! bits, little-endian (NaN payloads and -0.0 survive). Arrays are written element 0 first.
//!
//! | Offset | Size    | Field                                                            |
//! |-------:|--------:|------------------------------------------------------------------|
//! |      0 |  2      | magic `b"WG"`                                                    |
//! |      2 |  1      | format version, `1`                                              |
//! |      3 |  5 × u8 | set lengths: devices, counterparties, merchants, IP prefixes, geo cells |
//! |      8 | 14 × u64| `slots`                                                          |
//! |    120 |  u32    | `last_seen`                                                      |
//! |    124 |  u32    | `first_seen`                                                     |
//! |    128 |  u32    | `fast_at`                                                        |
//! |    132 |  4 × u32| `cred`                                                           |
//! |    148 |  u32    | `last_geo_at`                                                    |
//! |    152 |  u32    | `last_freeze`                                                    |
//! |    156 |  u32    | `ring_base`                                                      |
//! |    160 |  7 × u16| `ring`                                                           |
//! |    174 |  f32    | `amt_mean`                                                       |
//! |    178 |  f32    | `amt_s`                                                          |
//! |    182 |  f32    | `amt_n`                                                          |
//! |    186 |  f32    | `out_n`                                                          |
//! |    190 |  f32    | `all_n`                                                          |
//! |    194 |  f32    | `balance`                                                        |
//! |    198 |  i16    | `last_lat`                                                       |
//! |    200 |  i16    | `last_lon`                                                       |
//! |    202 |  4 × u16| `novel`                                                          |
//! |    210 |  u16    | `failed`                                                         |
//! |    212 |  u16    | `tiny_new`                                                       |
//! |    214 | 24 × u16| `hours`                                                          |
//! |    262 |  u8     | `flags`                                                          |
//!
//! The set lengths record the slot layout ([`Params::sets`]) the writer ran with. The sets lie
//! contiguously in the slot array, in [`SetKind`](super::SetKind) order, as [`Params::new`]
//! lays them out, so the lengths alone fix every set's start. When the reader's layout differs
//! (the config changed between releases), [`decode`] moves each set to its new place, keeping
//! its first `min(old, new)` entries (the most recent) and zero-filling the rest.

use super::{
    payee_bits, slot_fp, Params, Profile, DEDUP_SLOTS, RING_DELTAS, SLOT_CAPACITY, YOUNG_SLOTS,
};

/// Current format version written by [`encode`].
pub const FORMAT_VERSION: u8 = 7;

/// The two bytes every record starts with.
pub const MAGIC: [u8; 2] = *b"WG";

/// Number of remembered sets, one length byte each in the header.
const SET_KINDS: usize = 5;

/// Magic, version and set lengths.
const HEADER_LEN: usize = MAGIC.len() + 1 + SET_KINDS;

/// Slots in a version-1 record.
const V1_SLOTS: usize = 14;
/// Ring entries in a version-1 record.
const V1_RING: usize = 7;

// Version 1 is frozen: if the profile's shape changes, old records must still decode, so the
// change needs a new format version (and this assertion moved to the new version's decoder).
const _: () = assert!(
    SLOT_CAPACITY == V1_SLOTS && RING_DELTAS == V1_RING,
    "Profile changed shape: add a new codec FORMAT_VERSION and keep decoding version 1"
);

/// Bytes of a record's version-1 fields after the slots (`last_seen` … `flags`).
const CORE_FIELDS: usize = V1_LEN - HEADER_LEN - V1_SLOTS * 8;

/// Bytes of the payee-age fields versions 3 and later append (`payees_seen` … `young_n`).
const V3_TAIL: usize = V3_LEN - V1_LEN;

/// Exact size of an encoded profile of the current version.
pub const ENCODED_LEN: usize = V6_LEN - 24; // one byte per hour instead of two

/// Exact size of a version-6 record (two-byte hours).
pub const V6_LEN: usize = V5_LEN + 2; // run, odd_share

/// Exact size of a version-5 record (32-bit slots, no run state).
pub const V5_LEN: usize = HEADER_LEN
    + SLOT_CAPACITY * 4 // slots
    + CORE_FIELDS
    + V3_TAIL
    + DEDUP_SLOTS * 4; // recent_ids

/// Exact size of a version-4 record (64-bit slots, with the duplicate memory).
pub const V4_LEN: usize = V3_LEN + DEDUP_SLOTS * 4; // recent_ids

/// Exact size of a version-3 record (two young-payee slots, no duplicate memory).
pub const V3_LEN: usize = V1_LEN
    + 2 * 8 // payees_seen
    + YOUNG_SLOTS * (2 + 2 + 4) // young_fp, young_sum, young_first
    + 1; // young_n

/// Exact size of a version-2 record (one young-payee slot).
pub const V2_LEN: usize = V1_LEN
    + 2 * 8 // payees_seen
    + 2 * 2 // young_fp, young_sum
    + 4 // young_first
    + 1; // young_n

/// Exact size of a version-1 record.
pub const V1_LEN: usize = HEADER_LEN
    + V1_SLOTS * 8 // slots
    + 3 * 4 // last_seen, first_seen, fast_at
    + 4 * 4 // cred
    + 3 * 4 // last_geo_at, last_freeze, ring_base
    + V1_RING * 2 // ring
    + 6 * 4 // amt_mean, amt_s, amt_n, out_n, all_n, balance
    + 2 * 2 // last_lat, last_lon
    + 4 * 2 // novel
    + 2 * 2 // failed, tiny_new
    + 24 * 2 // hours
    + 1; // flags

/// Errors decoding a changelog record.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum CodecError {
    /// The record has no bytes at all.
    #[error("empty profile record")]
    Empty,
    /// The record does not start with [`MAGIC`]: it is not an encoded profile.
    #[error("profile record does not start with the magic bytes \"WG\"")]
    BadMagic,
    /// The record was written by a newer release, in a format this one does not know.
    #[error("profile record has unknown format version {0} (this build reads up to {max})", max = FORMAT_VERSION)]
    UnknownVersion(u8),
    /// The record is shorter than its version's fixed size.
    #[error("profile record truncated: {got} bytes, expected {expected}")]
    Truncated {
        /// Size of a record of its version.
        expected: usize,
        /// Size of the record.
        got: usize,
    },
    /// The record is longer than its version's fixed size.
    #[error("profile record too long: {got} bytes, expected {expected}")]
    TooLong {
        /// Size of a record of its version.
        expected: usize,
        /// Size of the record.
        got: usize,
    },
    /// A set layout (the five set lengths, in `SetKind` order) does not fit the slots of a
    /// profile: the record's header is corrupt, or the reader's [`Params::sets`] is invalid.
    #[error("set layout {0:?} does not fit the {cap} slots of a profile", cap = SLOT_CAPACITY)]
    BadLayout([u8; SET_KINDS]),
}

/// The length of the profile at the start of a changelog value, for the versions after which
/// a feedback case may follow (5 and later); `None` for older records and for bytes that are
/// not a profile of a known version. [`crate::engine::feedback::record`] splits a value with it.
pub fn profile_len(bytes: &[u8]) -> Option<usize> {
    match bytes.get(2) {
        Some(&FORMAT_VERSION) => Some(ENCODED_LEN),
        Some(6) => Some(V6_LEN),
        Some(5) => Some(V5_LEN),
        _ => None,
    }
}

/// Appends the encoding of `profile` in the current format ([`FORMAT_VERSION`], exactly
/// [`ENCODED_LEN`] bytes) to `out`. The header records the set lengths of `params`, the
/// layout `profile.slots` is partitioned by.
pub fn encode(profile: &Profile, params: &Params, out: &mut Vec<u8>) {
    // Exhaustive on purpose: a new Profile field fails to compile here until it is encoded.
    let Profile {
        slots,
        last_seen,
        first_seen,
        fast_at,
        cred,
        last_geo_at,
        last_freeze,
        ring_base,
        ring,
        amt_mean,
        amt_s,
        amt_n,
        out_n,
        all_n,
        balance,
        last_lat,
        last_lon,
        novel,
        failed,
        tiny_new,
        hours,
        flags,
        payees_seen,
        young_fp,
        young_sum,
        young_first,
        young_n,
        recent_ids,
        run,
        odd_share,
    } = profile;

    out.reserve(ENCODED_LEN);
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.push(FORMAT_VERSION);
    for (_, len) in &params.sets {
        out.push(*len);
    }
    for s in slots {
        out.extend_from_slice(&s.to_le_bytes());
    }
    for t in [last_seen, first_seen, fast_at] {
        out.extend_from_slice(&t.to_le_bytes());
    }
    for t in cred {
        out.extend_from_slice(&t.to_le_bytes());
    }
    for t in [last_geo_at, last_freeze, ring_base] {
        out.extend_from_slice(&t.to_le_bytes());
    }
    for d in ring {
        out.extend_from_slice(&d.to_le_bytes());
    }
    for x in [amt_mean, amt_s, amt_n, out_n, all_n, balance] {
        out.extend_from_slice(&x.to_bits().to_le_bytes());
    }
    out.extend_from_slice(&last_lat.to_le_bytes());
    out.extend_from_slice(&last_lon.to_le_bytes());
    for v in novel {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&failed.to_le_bytes());
    out.extend_from_slice(&tiny_new.to_le_bytes());
    out.extend_from_slice(hours);
    out.push(*flags);
    for b in payees_seen {
        out.extend_from_slice(&b.to_le_bytes());
    }
    for v in young_fp.iter().chain(young_sum) {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for t in young_first {
        out.extend_from_slice(&t.to_le_bytes());
    }
    out.push(*young_n);
    for id in recent_ids {
        out.extend_from_slice(&id.to_le_bytes());
    }
    out.push(*run);
    out.push(*odd_share);
    debug_assert_eq!(out.len() - start, ENCODED_LEN);
}

/// Decodes a record written by [`encode`] of this or any earlier release, for a reader whose
/// slot layout is `params.sets`. A record written with other set lengths has its sets remapped:
/// each keeps its first `min(old, new)` (most recent) entries and the rest is zero. Never
/// panics and never allocates.
pub fn decode(bytes: &[u8], params: &Params) -> Result<Profile, CodecError> {
    if bytes.is_empty() {
        return Err(CodecError::Empty);
    }
    let n = bytes.len().min(MAGIC.len());
    if bytes.get(..n) != MAGIC.get(..n) {
        return Err(CodecError::BadMagic);
    }
    let Some(&version) = bytes.get(MAGIC.len()) else {
        return Err(CodecError::Truncated {
            expected: ENCODED_LEN,
            got: bytes.len(),
        });
    };
    // (record length, bytes per slot) of each known version.
    let (len, slot_bytes) = match version {
        1 => (V1_LEN, 8),
        2 => (V2_LEN, 8),
        3 => (V3_LEN, 8),
        4 => (V4_LEN, 8),
        5 => (V5_LEN, 4),
        6 => (V6_LEN, 4),
        7 => (ENCODED_LEN, 4),
        v => return Err(CodecError::UnknownVersion(v)),
    };
    let got = bytes.len();
    if got < len {
        return Err(CodecError::Truncated { expected: len, got });
    }
    if got > len {
        return Err(CodecError::TooLong { expected: len, got });
    }
    // The length was checked, so the reader cannot run dry; should it ever, that is a
    // truncation, never a panic.
    let truncated = CodecError::Truncated { expected: len, got };
    let mut r = Reader::new(bytes, truncated);
    r.take::<{ MAGIC.len() + 1 }>()?;
    let lens: [u8; SET_KINDS] = r.take()?;
    if lens.iter().map(|&l| l as usize).sum::<usize>() > SLOT_CAPACITY {
        return Err(CodecError::BadLayout(lens));
    }
    let mut profile = Profile::default();
    let mut seed = 0u64;
    if slot_bytes == 8 {
        let cp = lens[0] as usize..(lens[0] + lens[1]) as usize;
        for (i, s) in profile.slots.iter_mut().enumerate() {
            let h = u64::from_le_bytes(r.take()?);
            // Version 1 had no paid-payee filter: it is seeded with the payees known exactly,
            // from their whole hashes, as the filter is fed at run time.
            if h != 0 && cp.contains(&i) {
                seed |= payee_bits(h);
            }
            *s = if h == 0 { 0 } else { slot_fp(h) };
        }
    } else {
        for s in profile.slots.iter_mut() {
            *s = r.u32()?;
        }
    }
    read_core(&mut r, &mut profile, version >= 7)?;
    match version {
        1 => profile.payees_seen[0] = seed,
        2 => {
            for b in &mut profile.payees_seen {
                *b = u64::from_le_bytes(r.take()?);
            }
            // The one watch slot of version 2 becomes slot 0.
            profile.young_fp[0] = r.u16()?;
            profile.young_sum[0] = r.u16()?;
            profile.young_first[0] = r.u32()?;
            let [n] = r.take()?;
            profile.young_n = n.min(15);
        }
        _ => {
            read_v3_tail(&mut r, &mut profile)?;
            if version >= 4 {
                for id in profile.recent_ids.iter_mut() {
                    *id = r.u32()?;
                }
            }
            if version >= 6 {
                let [run, share] = r.take()?;
                profile.run = run;
                profile.odd_share = share;
            }
        }
    }
    debug_assert!(r.rest().is_empty());
    if lens != params.sets.map(|(_, len)| len) {
        profile.slots = remap(&profile.slots, lens, &params.sets)?;
    }
    Ok(profile)
}

/// Reads the payee-age fields of a version-3 (or later) record.
fn read_v3_tail(r: &mut Reader<'_>, profile: &mut Profile) -> Result<(), CodecError> {
    for b in &mut profile.payees_seen {
        *b = u64::from_le_bytes(r.take()?);
    }
    for v in profile.young_fp.iter_mut() {
        *v = r.u16()?;
    }
    for v in profile.young_sum.iter_mut() {
        *v = r.u16()?;
    }
    for t in profile.young_first.iter_mut() {
        *t = r.u32()?;
    }
    let [n] = r.take()?;
    profile.young_n = n;
    Ok(())
}

/// The hour histogram of a record before version 7 (256 units per event, two bytes per hour)
/// in bytes of [`super::HOUR_UNIT`] per event: each hour rounded to the nearest unit, and the
/// whole histogram scaled down if its largest hour would not fit a byte, as the profile
/// halves it when a bin would overflow.
pub fn hours_from_u16(old: [u16; 24]) -> [u8; 24] {
    let per = 256.0 / super::HOUR_UNIT as f64;
    let max = old.iter().copied().max().unwrap_or(0) as f64 / per;
    let scale = if max > u8::MAX as f64 {
        u8::MAX as f64 / max
    } else {
        1.0
    };
    old.map(|h| (h as f64 / per * scale).round().min(u8::MAX as f64) as u8)
}

/// Reads the fields every version has after its slots, `last_seen` … `flags` (the hours
/// one byte each when `hours_u8`, two before version 7); a truncation if the reader runs out
/// of bytes.
fn read_core(r: &mut Reader<'_>, p: &mut Profile, hours_u8: bool) -> Result<(), CodecError> {
    p.last_seen = r.u32()?;
    p.first_seen = r.u32()?;
    p.fast_at = r.u32()?;
    for t in &mut p.cred {
        *t = r.u32()?;
    }
    p.last_geo_at = r.u32()?;
    p.last_freeze = r.u32()?;
    p.ring_base = r.u32()?;
    for d in &mut p.ring {
        *d = r.u16()?;
    }
    for x in [
        &mut p.amt_mean,
        &mut p.amt_s,
        &mut p.amt_n,
        &mut p.out_n,
        &mut p.all_n,
        &mut p.balance,
    ] {
        *x = r.f32()?;
    }
    p.last_lat = i16::from_le_bytes(r.take()?);
    p.last_lon = i16::from_le_bytes(r.take()?);
    for v in &mut p.novel {
        *v = r.u16()?;
    }
    p.failed = r.u16()?;
    p.tiny_new = r.u16()?;
    if hours_u8 {
        p.hours = r.take()?;
    } else {
        let mut old = [0u16; 24];
        for h in &mut old {
            *h = r.u16()?;
        }
        p.hours = hours_from_u16(old);
    }
    let [flags] = r.take()?;
    p.flags = flags;
    Ok(())
}

/// Moves each set from the record's contiguous layout (`old_lens`) to the reader's `sets`,
/// keeping its leading (most recent) entries and zero-filling.
fn remap(
    old: &[u32; SLOT_CAPACITY],
    old_lens: [u8; SET_KINDS],
    sets: &[(u8, u8); SET_KINDS],
) -> Result<[u32; SLOT_CAPACITY], CodecError> {
    let mut new = [0u32; SLOT_CAPACITY];
    let mut old_start = 0usize;
    for (&old_len, &(start, len)) in old_lens.iter().zip(sets) {
        let old_end = old_start + old_len as usize;
        let src = old
            .get(old_start..old_end)
            .ok_or(CodecError::BadLayout(old_lens))?;
        let dst = new
            .get_mut(start as usize..start as usize + len as usize)
            .ok_or(CodecError::BadLayout(sets.map(|(_, l)| l)))?;
        for (d, s) in dst.iter_mut().zip(src) {
            *d = *s;
        }
        old_start = old_end;
    }
    Ok(new)
}

type Reader<'a> = crate::engine::bytes::Reader<'a, CodecError>;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::engine::baseline::{SetKind, FLAG_BASE_NEW_PAYEE, RING_MAX_DELTA};
    use crate::engine::pipeline::EngineConfig;
    use crate::fuzz::XorShift;

    fn params() -> Params {
        EngineConfig::default().params()
    }

    /// A layout pinned independently of the default config, for the golden bytes.
    pub(crate) fn pinned_params() -> Params {
        Params {
            sets: [(0, 3), (3, 4), (7, 3), (10, 2), (12, 2)],
            ..params()
        }
    }

    /// The whole 64-bit slot hashes of [`sample`], as records before version 5 hold them.
    fn sample_hashes() -> [u64; SLOT_CAPACITY] {
        std::array::from_fn(|i| 0x0123_4567_89AB_CD00 + i as u64)
    }

    /// Every field distinctive and non-default; multi-byte values have distinct bytes so
    /// byte order shows.
    fn sample() -> Profile {
        let slots = sample_hashes().map(slot_fp);
        // As records before version 7 hold them, so every version decodes to this sample.
        let mut hours = [0u16; 24];
        for (i, h) in hours.iter_mut().enumerate() {
            *h = (i as u16) * 1000 + 7;
        }
        let hours = hours_from_u16(hours);
        Profile {
            slots,
            last_seen: 1_790_000_000,
            first_seen: 1_700_000_001,
            fast_at: 1_789_999_000,
            cred: [1_789_000_001, 1_789_000_002, 1_789_000_003, 1_789_000_004],
            last_geo_at: 1_789_500_000,
            last_freeze: 1_789_600_000,
            ring_base: 1_789_999_500,
            ring: [1, 2 | 0x8000, 300, 4_000, RING_MAX_DELTA, 0x8001, 7],
            amt_mean: 4.25,
            amt_s: 12.5,
            amt_n: 7.75,
            out_n: 3.5,
            all_n: 42.0,
            balance: 1234.5,
            last_lat: 3_123,
            last_lon: -12_147,
            novel: [256, 512, 768, 1024],
            failed: 513,
            tiny_new: 258,
            hours,
            flags: FLAG_BASE_NEW_PAYEE | 0b101,
            payees_seen: [0x0102_0304_0506_0708, 0x1112_1314_1516_1718],
            young_fp: [0xBEEF, 0xCAFE],
            young_sum: [0x1234, 0x5678],
            young_first: [1_789_888_000, 1_789_999_000],
            young_n: 0x35,
            recent_ids: [0xA1A2_A3A4, 0xB1B2_B3B4, 0xC1C2_C3C4, 7],
            run: 0x2A,
            odd_share: 0x1B,
        }
    }

    /// [`sample`] as a record before version 6 decodes: no run under way, no learned share.
    fn sample_v5() -> Profile {
        Profile {
            run: 0,
            odd_share: 0,
            ..sample()
        }
    }

    /// [`sample`] as a version-2 record decodes: watch slot 0 only, count 5.
    fn sample_v2() -> Profile {
        Profile {
            young_fp: [0xBEEF, 0],
            young_sum: [0x1234, 0],
            young_first: [1_789_888_000, 0],
            young_n: 5,
            recent_ids: [0; DEDUP_SLOTS],
            ..sample_v5()
        }
    }

    /// [`sample`] as a version-1 record decodes: no young payee, and a paid-payee filter
    /// seeded from the counterparty set of `p`.
    fn sample_from_v1(p: &Params) -> Profile {
        let mut prof = Profile {
            payees_seen: [0; 2],
            young_fp: [0; YOUNG_SLOTS],
            young_sum: [0; YOUNG_SLOTS],
            young_first: [0; YOUNG_SLOTS],
            young_n: 0,
            recent_ids: [0; DEDUP_SLOTS],
            ..sample_v5()
        };
        let (start, len) = p.sets[SetKind::Counterparty as usize];
        for h in &sample_hashes()[start as usize..(start + len) as usize] {
            prof.payees_seen[0] |= payee_bits(*h);
        }
        prof
    }

    fn enc(profile: &Profile, params: &Params) -> Vec<u8> {
        let mut out = Vec::new();
        encode(profile, params, &mut out);
        out
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn encoded_len_is_234() {
        assert_eq!(V1_LEN, 263);
        assert_eq!(V2_LEN, 288);
        assert_eq!(V3_LEN, 296);
        assert_eq!(V4_LEN, 312);
        assert_eq!(V5_LEN, 256);
        assert_eq!(V6_LEN, 258);
        assert_eq!(ENCODED_LEN, 234, "update the module doc table");
        assert_eq!(enc(&Profile::default(), &params()).len(), ENCODED_LEN);
        assert_eq!(enc(&sample(), &params()).len(), ENCODED_LEN);
    }

    #[test]
    fn encode_appends() {
        let mut out = vec![0xEE; 5];
        encode(&sample(), &params(), &mut out);
        assert_eq!(out.len(), 5 + ENCODED_LEN);
        assert_eq!(&out[..5], &[0xEE; 5]);
        assert_eq!(decode(&out[5..], &params()), Ok(sample()));
    }

    #[test]
    fn round_trip_default() {
        let p = params();
        let prof = Profile::default();
        assert_eq!(decode(&enc(&prof, &p), &p), Ok(prof));
    }

    #[test]
    fn round_trip_every_field() {
        let p = params();
        let prof = sample();
        let back = decode(&enc(&prof, &p), &p).unwrap();
        assert_eq!(back, prof);
        // Spot-check fields PartialEq could not tell apart by accident.
        assert_eq!(back.last_lon, -12_147);
        assert_eq!(back.balance.to_bits(), 1234.5f32.to_bits());
    }

    #[test]
    fn floats_keep_their_bits() {
        let p = params();
        let mut prof = sample();
        prof.amt_mean = f32::from_bits(0x7FC0_1234); // NaN with a payload
        prof.amt_s = -0.0;
        prof.balance = f32::NEG_INFINITY;
        let back = decode(&enc(&prof, &p), &p).unwrap();
        assert_eq!(back.amt_mean.to_bits(), 0x7FC0_1234);
        assert_eq!(back.amt_s.to_bits(), (-0.0f32).to_bits());
        assert_eq!(back.balance, f32::NEG_INFINITY);
    }

    #[test]
    fn layout_offsets_match_the_doc_table() {
        let b = enc(&sample(), &pinned_params());
        assert_eq!(&b[0..3], b"WG\x07");
        assert_eq!(&b[3..8], &[3, 4, 3, 2, 2]);
        assert_eq!(&b[8..12], &slot_fp(0x0123_4567_89AB_CD00).to_le_bytes());
        assert_eq!(&b[60..64], &slot_fp(0x0123_4567_89AB_CD0D).to_le_bytes());
        // The version-1 fields from `last_seen` to `tiny_new`, 56 bytes earlier.
        let v1 = unhex(GOLDEN_V1);
        assert_eq!(&b[64..158], &v1[120..214]);
        assert_eq!(&b[64..68], &1_790_000_000u32.to_le_bytes());
        assert_eq!(&b[76..80], &1_789_000_001u32.to_le_bytes());
        assert_eq!(&b[100..104], &1_789_999_500u32.to_le_bytes());
        assert_eq!(&b[104..106], &1u16.to_le_bytes());
        assert_eq!(&b[118..122], &4.25f32.to_bits().to_le_bytes());
        assert_eq!(&b[138..142], &1234.5f32.to_bits().to_le_bytes());
        assert_eq!(&b[142..144], &3_123i16.to_le_bytes());
        assert_eq!(&b[144..146], &(-12_147i16).to_le_bytes());
        assert_eq!(&b[146..148], &256u16.to_le_bytes());
        assert_eq!(&b[154..156], &513u16.to_le_bytes());
        assert_eq!(&b[158..182], &sample().hours);
        assert_eq!(b[181], u8::MAX, "the largest hour fills its byte");
        assert_eq!(b[182], FLAG_BASE_NEW_PAYEE | 0b101);
        assert_eq!(&b[183..216], &unhex(GOLDEN_V3_TAIL)[..]);
        assert_eq!(&b[183..191], &0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(&b[199..201], &0xBEEFu16.to_le_bytes());
        assert_eq!(&b[207..211], &1_789_888_000u32.to_le_bytes());
        assert_eq!(b[215], 0x35);
        assert_eq!(&b[216..220], &0xA1A2_A3A4u32.to_le_bytes());
        assert_eq!(&b[228..232], &7u32.to_le_bytes());
        assert_eq!(&b[232..234], &[0x2A, 0x1B]);
    }

    #[test]
    fn old_hours_keep_their_proportions_in_a_byte() {
        // Small histograms keep their counts: 256 units per event become 16.
        let mut old = [0u16; 24];
        old[9] = 3 * 256;
        old[10] = 256;
        old[11] = 100; // 0.39 of an event: 6.25 units, rounded
        let h = hours_from_u16(old);
        assert_eq!((h[9], h[10], h[11], h[12]), (48, 16, 6, 0));
        // A large one is scaled so its largest hour fills a byte, the rest in proportion.
        let mut old = [0u16; 24];
        old[0] = 60_000;
        old[1] = 30_000;
        old[2] = 600;
        let h = hours_from_u16(old);
        assert_eq!((h[0], h[1], h[2]), (255, 128, 3));
    }

    #[test]
    fn version_5_records_still_decode() {
        let p = pinned_params();
        // Version 5 is version 6 without the run state: the same bytes up to 256.
        let (v5, want) = v5_sample();
        assert_eq!(decode(&v5, &p), Ok(want));
        assert_eq!(profile_len(&v5), Some(V5_LEN), "a case may follow");
        assert_eq!(
            profile_len(&unhex(GOLDEN_V1)),
            None,
            "no case follows version 1"
        );
    }

    /// A version-5 record of [`sample`] and the profile it decodes to, for the record tests
    /// of [`crate::engine::feedback::record`].
    pub(crate) fn v5_sample() -> (Vec<u8>, Profile) {
        let mut v5 = golden_v6();
        v5.truncate(V5_LEN);
        v5[2] = 5;
        (v5, sample_v5())
    }

    /// Version-1 bytes of [`sample`] with the pinned layout. If this test fails, the format
    /// changed: records already in the changelog would no longer decode. Do not update the
    /// literal; add a new format version instead.
    const GOLDEN_V1: &str = concat!(
        "5747010304030202", // magic, version 1, set lengths 3 4 3 2 2
        "00cdab8967452301", // slots[0]
        "01cdab896745230102cdab896745230103cdab896745230104cdab8967452301",
        "05cdab896745230106cdab896745230107cdab896745230108cdab8967452301",
        "09cdab89674523010acdab89674523010bcdab89674523010ccdab8967452301",
        "0dcdab8967452301",                                 // slots[13]
        "803bb16a01f153659837b16a",                         // last_seen, first_seen, fast_at
        "41f9a16a42f9a16a43f9a16a44f9a16a",                 // cred
        "609aa96a0021ab6a8c39b16a",                         // last_geo_at, last_freeze, ring_base
        "010002802c01a00fff7f01800700",                     // ring
        "00008840000048410000f840000060400000284200509a44", // amt_mean..balance
        "330c8dd0",                                         // last_lat, last_lon
        "0001000200030004",                                 // novel
        "01020201",                                         // failed, tiny_new
        "0700ef03d707bf0ba70f8f1377175f1b471f2f231727ff2a", // hours[0..12]
        "e72ecf32b7369f3a873e6f4257463f4a274e0f52f755df59", // hours[12..24]
        "85",                                               // flags
    );

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len() / 2)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn golden_bytes_v1_still_decode() {
        let p = pinned_params();
        // Old records keep decoding to the same profile, with the payee-age fields at their
        // defaults and the paid-payee filter seeded from the exact counterparty set.
        let golden = unhex(GOLDEN_V1);
        assert_eq!(golden.len(), V1_LEN);
        let back = decode(&golden, &p).unwrap();
        assert_eq!(back, sample_from_v1(&p));
        for &h in &sample_hashes()[3..7] {
            assert!(back.payee_seen(h), "counterparty {h:x} counts as paid");
        }
        // Each 64-bit slot became its fingerprint, so what was known stays known.
        assert_eq!(back.slots, sample_hashes().map(slot_fp));
        assert!(back.knows(&p, SetKind::Device, sample_hashes()[0]));
        assert_eq!(back.young_fp, [0; YOUNG_SLOTS]);
    }

    #[test]
    fn golden_bytes_v2_still_decode() {
        let p = pinned_params();
        // Version 2 is version 1 with a new version byte, plus a one-slot payee-age tail.
        let mut v2 = unhex(GOLDEN_V1);
        v2[2] = 2;
        v2.extend(unhex(concat!(
            "0807060504030201", // payees_seen[0]
            "1817161514131211", // payees_seen[1]
            "efbe",             // young_fp
            "3412",             // young_sum
            "0086af6a",         // young_first
            "05",               // young_n
        )));
        assert_eq!(v2.len(), V2_LEN);
        assert_eq!(decode(&v2, &p), Ok(sample_v2()));
        // A count above what a 4-bit slot holds saturates instead of spilling into slot 1.
        *v2.last_mut().unwrap() = 200;
        let back = decode(&v2, &p).unwrap();
        assert_eq!(back.young_n, 15);
    }

    /// The version-3 tail of [`sample`] (after the version-1 part).
    const GOLDEN_V3_TAIL: &str = concat!(
        "0807060504030201", // payees_seen[0]
        "1817161514131211", // payees_seen[1]
        "efbefeca",         // young_fp
        "34127856",         // young_sum
        "0086af6a9837b16a", // young_first
        "35",               // young_n
    );

    #[test]
    fn golden_bytes_v3_still_decode() {
        let p = pinned_params();
        // Version 3 is version 1 with a new version byte, plus the two-slot payee-age tail;
        // it decodes with an empty duplicate memory.
        let mut v3 = unhex(GOLDEN_V1);
        v3[2] = 3;
        v3.extend(unhex(GOLDEN_V3_TAIL));
        assert_eq!(v3.len(), V3_LEN);
        let want = Profile {
            recent_ids: [0; DEDUP_SLOTS],
            ..sample_v5()
        };
        assert_eq!(decode(&v3, &p), Ok(want));
    }

    #[test]
    fn golden_bytes_v4_still_decode() {
        let p = pinned_params();
        // Version 4 is version 3 with a new version byte, plus the duplicate memory.
        let mut v4 = unhex(GOLDEN_V1);
        v4[2] = 4;
        v4.extend(unhex(GOLDEN_V3_TAIL));
        v4.extend(unhex("a4a3a2a1b4b3b2b1c4c3c2c107000000"));
        assert_eq!(v4.len(), V4_LEN);
        assert_eq!(decode(&v4, &p), Ok(sample_v5()));
        // An empty 64-bit slot stays empty (it does not become fingerprint 1).
        v4[8..16].fill(0);
        let back = decode(&v4, &p).unwrap();
        assert_eq!(back.slots[0], 0);
    }

    /// The 14 slot fingerprints of [`sample`]: `slot_fp(0x0123_4567_89AB_CD00 + i)` is
    /// `0x8888_8867 ^ i`, little-endian.
    const GOLDEN_V5_SLOTS: &str = concat!(
        "67888888668888886588888864888888",
        "63888888628888886188888860888888",
        "6f8888886e8888886d8888886c888888",
        "6b8888886a888888",
    );

    /// The hours of [`sample`] in bytes (version 7).
    const GOLDEN_V7_HOURS: &str = concat!(
        "000b16212c37434e59646f7a", // hours[0..12] (hours[0], 7 of 256 units, rounds away)
        "85909ba6b1bcc8d3dee9f4ff", // hours[12..24]
    );

    /// Version-6 bytes of [`sample`] with the pinned layout, from the golden pieces.
    fn golden_v6() -> Vec<u8> {
        let v1 = unhex(GOLDEN_V1);
        let mut b = unhex("5747060304030202");
        b.extend(unhex(GOLDEN_V5_SLOTS));
        b.extend_from_slice(&v1[120..]);
        b.extend(unhex(GOLDEN_V3_TAIL));
        b.extend(unhex("a4a3a2a1b4b3b2b1c4c3c2c107000000"));
        b.extend(unhex("2a1b"));
        b
    }

    #[test]
    fn golden_bytes_v5_v6_and_v7() {
        let p = pinned_params();
        let b = enc(&sample(), &p);
        // Version 5: the version-4 fields with 32-bit slots.
        let mut want = golden_v6();
        want.truncate(V5_LEN);
        want[2] = 5;
        assert_eq!(decode(&want, &p), Ok(sample_v5()));
        // Version 6: version 5 with the run state after it.
        let want = golden_v6();
        assert_eq!(want.len(), V6_LEN);
        assert_eq!(decode(&want, &p), Ok(sample()));
        assert_eq!(profile_len(&want), Some(V6_LEN));
        // Version 7: version 6 with one byte per hour.
        let mut v7 = want[..158].to_vec();
        v7[2] = 7;
        v7.extend(unhex(GOLDEN_V7_HOURS));
        v7.extend_from_slice(&want[206..]);
        assert_eq!(hex(&b), hex(&v7), "the v7 encoding changed");
        assert_eq!(decode(&v7, &p), Ok(sample()));
    }

    fn cfg_with(devices: usize, counterparties: usize) -> EngineConfig {
        let mut cfg = EngineConfig::default();
        cfg.baseline.devices = devices;
        cfg.baseline.counterparties = counterparties;
        cfg
    }

    /// A profile whose every set is full of hashes naming their set and rank.
    fn filled(p: &Params) -> Profile {
        let mut prof = sample();
        prof.slots = [0; SLOT_CAPACITY];
        for (k, &(start, len)) in p.sets.iter().enumerate() {
            for j in 0..len as usize {
                prof.slots[start as usize + j] = ((k as u32 + 1) << 8) | (j as u32 + 1);
            }
        }
        prof
    }

    const KINDS: [SetKind; 5] = [
        SetKind::Device,
        SetKind::Counterparty,
        SetKind::Merchant,
        SetKind::IpPrefix,
        SetKind::GeoCell,
    ];

    /// Checks every set of `got` (layout `new`) holds the leading entries of that set of
    /// `old_prof` (layout `old`), then zeros.
    fn assert_remapped(got: &Profile, new: &Params, old_prof: &Profile, old: &Params) {
        for kind in KINDS {
            let src = old_prof.set(old, kind);
            let dst = got.set(new, kind);
            for (j, h) in dst.iter().enumerate() {
                let want = src.get(j).copied().unwrap_or(0);
                assert_eq!(*h, want, "{kind:?} entry {j}");
            }
        }
        let used: usize = new.sets.iter().map(|s| s.1 as usize).sum();
        assert!(got.slots[used..].iter().all(|h| *h == 0));
    }

    #[test]
    fn decode_remaps_a_changed_layout() {
        let old = params(); // devices 3, counterparties 4, merchants 3, ip 2, geo 2
        let new = cfg_with(2, 5).params();
        assert_eq!(
            new.sets.map(|s| s.1),
            [2, 5, 3, 2, 2],
            "test assumes this layout"
        );
        let prof = filled(&old);
        let got = decode(&enc(&prof, &old), &new).unwrap();
        assert_remapped(&got, &new, &prof, &old);
        // Spelled out: devices keep their two most recent, counterparties gain an empty slot.
        assert_eq!(got.set(&new, SetKind::Device), &[0x101, 0x102]);
        assert_eq!(
            got.set(&new, SetKind::Counterparty),
            &[0x201, 0x202, 0x203, 0x204, 0]
        );
        assert_eq!(got.set(&new, SetKind::Merchant), &[0x301, 0x302, 0x303]);
        assert_eq!(got.set(&new, SetKind::GeoCell), &[0x501, 0x502]);
        // Everything but the slots is untouched.
        assert_eq!(
            Profile {
                slots: prof.slots,
                ..got
            },
            prof
        );

        // And back the other way, where counterparties shrink.
        let prof = filled(&new);
        let got = decode(&enc(&prof, &new), &old).unwrap();
        assert_remapped(&got, &old, &prof, &new);
        assert_eq!(got.set(&old, SetKind::Device), &[0x101, 0x102, 0]);
        assert_eq!(
            got.set(&old, SetKind::Counterparty),
            &[0x201, 0x202, 0x203, 0x204]
        );
    }

    #[test]
    fn decode_remaps_to_a_smaller_total() {
        let old = params();
        let mut cfg = cfg_with(1, 1);
        cfg.baseline.merchants = 1;
        let new = cfg.params();
        let prof = filled(&old);
        let got = decode(&enc(&prof, &old), &new).unwrap();
        assert_remapped(&got, &new, &prof, &old);
        assert_eq!(got.set(&new, SetKind::IpPrefix), &[0x401, 0x402]);
    }

    #[test]
    fn rejects_bad_input() {
        let p = params();
        let good = enc(&sample(), &p);
        assert_eq!(decode(&[], &p), Err(CodecError::Empty));
        for n in [1, 2, 3, 8, ENCODED_LEN - 1] {
            assert_eq!(
                decode(&good[..n], &p),
                Err(CodecError::Truncated {
                    expected: ENCODED_LEN,
                    got: n
                }),
                "{n} bytes"
            );
        }
        let mut long = good.clone();
        long.push(0);
        assert_eq!(
            decode(&long, &p),
            Err(CodecError::TooLong {
                expected: ENCODED_LEN,
                got: ENCODED_LEN + 1
            })
        );
        for bad in [&b"XG"[..], b"WX", b"X", b"{\"user\":1}"] {
            assert_eq!(decode(bad, &p), Err(CodecError::BadMagic), "{bad:?}");
        }
        let mut v = good.clone();
        v[0] = b'w';
        assert_eq!(decode(&v, &p), Err(CodecError::BadMagic));
        let mut v = good.clone();
        v[2] = 99;
        assert_eq!(decode(&v, &p), Err(CodecError::UnknownVersion(99)));
        v[2] = 0;
        assert_eq!(decode(&v, &p), Err(CodecError::UnknownVersion(0)));
        // A future version is recognised from its header alone, whatever its length.
        assert_eq!(decode(b"WG\x08", &p), Err(CodecError::UnknownVersion(8)));
        // A version-1 record must have the version-1 length.
        let mut v1 = unhex(GOLDEN_V1);
        assert!(decode(&v1, &p).is_ok());
        v1.push(0);
        assert_eq!(
            decode(&v1, &p),
            Err(CodecError::TooLong {
                expected: V1_LEN,
                got: V1_LEN + 1
            })
        );
        let mut v = good.clone();
        v[3..8].copy_from_slice(&[3, 4, 3, 2, 3]); // 15 > 14
        assert_eq!(decode(&v, &p), Err(CodecError::BadLayout([3, 4, 3, 2, 3])));
        v[3..8].copy_from_slice(&[255; 5]);
        assert_eq!(decode(&v, &p), Err(CodecError::BadLayout([255; 5])));
    }

    #[test]
    fn rejects_an_invalid_reader_layout_without_panicking() {
        let p = params();
        let bytes = enc(&sample(), &p);
        let bad = Params {
            sets: [(0, 3), (3, 4), (7, 3), (10, 2), (12, 9)],
            ..params()
        };
        assert_eq!(
            decode(&bytes, &bad),
            Err(CodecError::BadLayout([3, 4, 3, 2, 9]))
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        let p = params();
        let current = p.sets.map(|s| s.1);
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut buf = Vec::with_capacity(ENCODED_LEN + 64);
        let mut ok = 0;
        let cases = 10_000 * crate::fuzz::scale();
        for _ in 0..cases {
            buf.clear();
            let len = (rng.next() % (ENCODED_LEN as u64 + 64)) as usize;
            buf.extend((0..len).map(|_| rng.next() as u8));
            // Steer most inputs past the early checks so the deep paths are exercised.
            let mode = rng.next() % 4;
            if mode > 0 {
                buf.resize(ENCODED_LEN, 0);
                buf[..3].copy_from_slice(&[b'W', b'G', FORMAT_VERSION]);
            }
            if mode == 2 {
                for l in &mut buf[3..8] {
                    *l = (rng.next() % 5) as u8; // small lengths: remap paths
                }
            }
            if mode == 3 {
                buf[3..8].copy_from_slice(&current);
            }
            if let Ok(prof) = decode(&buf, &p) {
                ok += 1;
                if buf[3..8] == current {
                    assert_eq!(enc(&prof, &p), buf, "same layout re-encodes verbatim");
                }
            }
        }
        assert!(ok > cases / 4, "only {ok} of {cases} inputs decoded");
        eprintln!("{cases} random profile records checked, {ok} decoded");
    }
}
