//! Renamed ids: every id the simulator writes (`event_id`, `user_id`, `device_id`,
//! `counterparty`) spelled differently, through a keyed bijection, for the metamorphic check
//! that detection does not depend on id spellings ([`crate::tools::eval::metamorphic`]).
//!
//! An id is the number behind its original spelling (the masked digest or counter the
//! generator formats) put through a keyed permutation of `u64` and written as a kind prefix
//! and 13 base-32 digits: `acct_…`, `evt_…`, `dev_…`, `mch_…`, `wal_…`, `crd_…`, `tel_…`.
//! Why a bijection of spellings: the permutation is one-to-one on numbers, the number is a
//! function of the original spelling and determines it, and the prefix keeps kinds apart, so
//! two events share a renamed id exactly when they shared the original one.

use super::world::Party;

/// Kind of id: its tag in the permutation and its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// `user_id`.
    User,
    /// `event_id`.
    Event,
    /// `device_id`.
    Device,
    /// A merchant counterparty.
    Merchant,
    /// A wallet (person) counterparty.
    Person,
    /// A card or bank account counterparty.
    Card,
    /// A phone number counterparty.
    Phone,
}

impl IdKind {
    fn prefix(self) -> &'static [u8] {
        match self {
            IdKind::User => b"acct_",
            IdKind::Event => b"evt_",
            IdKind::Device => b"dev_",
            IdKind::Merchant => b"mch_",
            IdKind::Person => b"wal_",
            IdKind::Card => b"crd_",
            IdKind::Phone => b"tel_",
        }
    }

    fn tag(self) -> u64 {
        self as u64 + 1
    }
}

/// A keyed permutation of `u64`: XOR with a key-derived word, the MurmurHash3 finaliser
/// (a bijection), XOR with the key again. One-to-one for every `(key, kind)`.
pub fn permute(key: u64, kind: IdKind, x: u64) -> u64 {
    let mut z = x ^ key.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ kind.tag().rotate_left(40);
    z ^= z >> 33;
    z = z.wrapping_mul(0xff51_afd7_ed55_8ccd);
    z ^= z >> 33;
    z = z.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    z ^= z >> 33;
    z ^ key
}

const DIGITS: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// Appends the renamed spelling of number `x` of kind `kind` under `key`.
pub fn write(out: &mut Vec<u8>, key: u64, kind: IdKind, x: u64) {
    out.extend_from_slice(kind.prefix());
    let z = permute(key, kind, x);
    // 13 digits of 5 bits cover the 64 bits (the first digit holds the top 4).
    for i in (0..13).rev() {
        out.push(DIGITS[((z >> (i * 5)) & 31) as usize]);
    }
}

/// The number behind a counterparty's original spelling, and its kind.
pub fn party_number(p: &Party) -> (IdKind, u64) {
    match *p {
        Party::Merchant(x) => (IdKind::Merchant, x & 0xff_ffff_ffff),
        Party::Person(x) => (IdKind::Person, x & 0xff_ffff_ffff),
        Party::Card(x) => (IdKind::Card, x & 0xffff_ffff_ffff),
        Party::Phone(x) => (IdKind::Phone, x),
    }
}

/// The number behind a device's original spelling (`d-` and 12 hex digits).
pub fn device_number(d: u64) -> u64 {
    d & 0xffff_ffff_ffff
}

/// The number behind an event's original spelling (`e-<user>-<seq>`).
pub fn event_number(user: u32, seq: u32) -> u64 {
    (user as u64) << 32 | seq as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renamed_ids_are_one_to_one_and_keyed() {
        let mut seen = std::collections::HashSet::new();
        for kind in [IdKind::User, IdKind::Device] {
            for x in 0..5000u64 {
                let mut v = Vec::new();
                write(&mut v, 7, kind, x);
                assert_eq!(v.len(), kind.prefix().len() + 13);
                assert!(seen.insert(v), "{kind:?} {x}");
            }
        }
        assert_ne!(permute(1, IdKind::User, 5), permute(2, IdKind::User, 5));
        assert_ne!(permute(1, IdKind::User, 5), permute(1, IdKind::Event, 5));
    }
}
