//! The simulated world shared by every user: cities with real coordinates, IP ranges, and the
//! deterministic ids of devices, merchants, people, cards and phone numbers.
//!
//! Ids are digests of `(seed, kind, numbers)`, so the same seed names the same entities and
//! nothing about an id reveals whether an attacker or an owner uses it.

use std::net::Ipv4Addr;

use rand::Rng;

/// A city: name, coordinates in degrees, a relative population weight, and the first two
/// octets of an IP range that plausibly geolocates there (illustrative, not a registry copy).
#[derive(Debug, Clone, Copy)]
pub struct City {
    /// Display name.
    pub name: &'static str,
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lon: f64,
    /// Relative weight (population of wallet users).
    pub weight: u32,
    /// First two octets of a local IP range.
    pub net: [u8; 2],
}

const fn c(name: &'static str, lat: f64, lon: f64, weight: u32, net: [u8; 2]) -> City {
    City {
        name,
        lat,
        lon,
        weight,
        net,
    }
}

/// Home cities of users (mainland China, weights roughly by urban population).
pub const HOME_CITIES: &[City] = &[
    c("Shanghai", 31.2304, 121.4737, 24, [116, 224]),
    c("Beijing", 39.9042, 116.4074, 21, [123, 112]),
    c("Guangzhou", 23.1291, 113.2644, 18, [113, 108]),
    c("Shenzhen", 22.5431, 114.0579, 17, [119, 123]),
    c("Chengdu", 30.5728, 104.0668, 16, [171, 88]),
    c("Chongqing", 29.5630, 106.5516, 16, [14, 104]),
    c("Tianjin", 39.3434, 117.3616, 13, [60, 25]),
    c("Hangzhou", 30.2741, 120.1551, 12, [115, 192]),
    c("Wuhan", 30.5928, 114.3055, 12, [59, 172]),
    c("Xi'an", 34.3416, 108.9398, 12, [113, 200]),
    c("Suzhou", 31.2989, 120.5853, 12, [58, 208]),
    c("Zhengzhou", 34.7466, 113.6253, 12, [171, 8]),
    c("Shijiazhuang", 38.0428, 114.5149, 11, [121, 28]),
    c("Changsha", 28.2282, 112.9388, 10, [175, 8]),
    c("Qingdao", 36.0671, 120.3826, 10, [27, 223]),
    c("Harbin", 45.8038, 126.5350, 10, [1, 189]),
    c("Dongguan", 23.0207, 113.7518, 10, [183, 36]),
    c("Nanjing", 32.0603, 118.7969, 9, [180, 110]),
    c("Shenyang", 41.8057, 123.4315, 9, [124, 93]),
    c("Hefei", 31.8206, 117.2272, 9, [36, 5]),
    c("Jinan", 36.6512, 117.1201, 9, [39, 88]),
    c("Ningbo", 29.8683, 121.5440, 9, [122, 224]),
    c("Foshan", 23.0215, 113.1214, 9, [113, 66]),
    c("Kunming", 25.0389, 102.7183, 8, [116, 52]),
    c("Fuzhou", 26.0745, 119.2965, 8, [27, 148]),
    c("Nanning", 22.8170, 108.3665, 8, [116, 1]),
    c("Dalian", 38.9140, 121.6147, 7, [42, 84]),
    c("Nanchang", 28.6820, 115.8579, 6, [182, 98]),
    c("Guiyang", 26.6470, 106.6302, 6, [58, 16]),
    c("Xiamen", 24.4798, 118.0894, 5, [110, 80]),
    c("Taiyuan", 37.8706, 112.5489, 5, [118, 77]),
    c("Lanzhou", 36.0611, 103.8343, 4, [61, 178]),
    c("Urumqi", 43.8256, 87.6168, 4, [124, 88]),
    c("Hohhot", 40.8424, 111.7490, 3, [110, 6]),
    c("Haikou", 20.0440, 110.1999, 3, [124, 225]),
    c("Lhasa", 29.6520, 91.1721, 1, [202, 98]),
];

/// Destinations of international trips.
pub const TRAVEL_ABROAD: &[City] = &[
    c("Hong Kong", 22.3193, 114.1694, 20, [203, 198]),
    c("Macau", 22.1987, 113.5439, 6, [60, 246]),
    c("Taipei", 25.0330, 121.5654, 4, [114, 36]),
    c("Tokyo", 35.6762, 139.6503, 10, [126, 22]),
    c("Osaka", 34.6937, 135.5023, 6, [126, 72]),
    c("Seoul", 37.5665, 126.9780, 8, [211, 36]),
    c("Singapore", 1.3521, 103.8198, 8, [116, 86]),
    c("Bangkok", 13.7563, 100.5018, 10, [171, 96]),
    c("Kuala Lumpur", 3.1390, 101.6869, 5, [175, 139]),
    c("Ho Chi Minh City", 10.8231, 106.6297, 3, [113, 161]),
    c("Dubai", 25.2048, 55.2708, 3, [94, 200]),
    c("London", 51.5072, -0.1276, 3, [81, 2]),
    c("Paris", 48.8566, 2.3522, 3, [90, 6]),
    c("Sydney", -33.8688, 151.2093, 3, [101, 160]),
    c("Los Angeles", 34.0522, -118.2437, 2, [104, 28]),
    c("New York", 40.7128, -74.0060, 2, [74, 101]),
];

/// Where remote attackers (or their proxies and VPN exits) appear from.
pub const ATTACKER_ABROAD: &[City] = &[
    c("Phnom Penh", 11.5564, 104.9282, 10, [36, 37]),
    c("Manila", 14.5995, 120.9842, 8, [112, 198]),
    c("Yangon", 16.8409, 96.1735, 6, [103, 25]),
    c("Vientiane", 17.9757, 102.6331, 4, [115, 84]),
    c("Ho Chi Minh City", 10.8231, 106.6297, 5, [113, 161]),
    c("Bangkok", 13.7563, 100.5018, 5, [171, 96]),
    c("Kuala Lumpur", 3.1390, 101.6869, 4, [175, 139]),
    c("Hong Kong", 22.3193, 114.1694, 6, [203, 198]),
    c("Dubai", 25.2048, 55.2708, 3, [94, 200]),
    c("Moscow", 55.7558, 37.6173, 3, [95, 165]),
    c("Istanbul", 41.0082, 28.9784, 2, [88, 230]),
    c("Lagos", 6.5244, 3.3792, 3, [105, 112]),
    c("Los Angeles", 34.0522, -118.2437, 3, [104, 28]),
    c("São Paulo", -23.5505, -46.6333, 2, [177, 32]),
];

/// First two octets of mobile-carrier address pools (carrier-grade NAT: the address changes
/// between sessions, and says little about the city).
pub const CARRIER_NETS: &[[u8; 2]] = &[[39, 144], [39, 156], [117, 136], [112, 96], [223, 104]];

/// First two octets of cloud and hosting ranges (bots, proxies, emulators).
pub const HOSTING_NETS: &[[u8; 2]] = &[[47, 92], [119, 29], [106, 75], [45, 134], [185, 220]];

/// Picks an index from `weights` in proportion.
pub fn pick_weighted<R: Rng>(rng: &mut R, weights: impl Iterator<Item = u32> + Clone) -> usize {
    let total: u32 = weights.clone().sum();
    let mut x = rng.gen_range(0..total.max(1));
    let mut last = 0;
    for (i, w) in weights.enumerate() {
        if x < w {
            return i;
        }
        x -= w;
        last = i;
    }
    last
}

/// Picks a city from a table in proportion to its weight.
pub fn pick_city<R: Rng>(rng: &mut R, table: &'static [City]) -> &'static City {
    &table[pick_weighted(rng, table.iter().map(|c| c.weight))]
}

/// A random host in the /16 `net`.
pub fn host_in16<R: Rng>(rng: &mut R, net: [u8; 2]) -> Ipv4Addr {
    Ipv4Addr::new(net[0], net[1], rng.gen(), rng.gen_range(1..255))
}

/// A random host in the /24 `net`.
pub fn host_in24<R: Rng>(rng: &mut R, net: [u8; 3]) -> Ipv4Addr {
    Ipv4Addr::new(net[0], net[1], net[2], rng.gen_range(2..255))
}

/// Great-circle distance in km.
pub fn distance_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, lo1) = (a.0.to_radians(), a.1.to_radians());
    let (la2, lo2) = (b.0.to_radians(), b.1.to_radians());
    let h = ((la2 - la1) / 2.0).sin().powi(2)
        + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().min(1.0).asin()
}

/// Deterministic 64-bit digest of a seed, a domain tag and numbers.
pub fn digest(seed: u64, tag: &[u8], nums: &[u64]) -> u64 {
    let mut buf = [0u8; 64];
    let mut n = 0;
    for x in std::iter::once(seed).chain(nums.iter().copied()).take(7) {
        buf[n..n + 8].copy_from_slice(&x.to_le_bytes());
        n += 8;
    }
    let t = tag.len().min(64 - n);
    buf[n..n + t].copy_from_slice(&tag[..t]);
    xxhash_rust::xxh3::xxh3_64(&buf[..n + t])
}

/// A counterparty of a money movement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Party {
    /// A merchant (`m-…`).
    Merchant(u64),
    /// Another wallet (`p-…`).
    Person(u64),
    /// A bank card or account token (`card-…`).
    Card(u64),
    /// A mobile number (11 digits).
    Phone(u64),
}

impl Party {
    /// Appends the wire form.
    pub fn write(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        // Writing into a Vec cannot fail.
        let _ = match *self {
            Party::Merchant(x) => write!(out, "m-{:010x}", x & 0xff_ffff_ffff),
            Party::Person(x) => write!(out, "p-{:010x}", x & 0xff_ffff_ffff),
            Party::Card(x) => write!(out, "card-{:012x}", x & 0xffff_ffff_ffff),
            Party::Phone(x) => write!(out, "{x}"),
        };
    }

    /// The number behind the id.
    pub fn id(&self) -> u64 {
        match *self {
            Party::Merchant(x) | Party::Person(x) | Party::Card(x) | Party::Phone(x) => x,
        }
    }

    /// The wire form as a string.
    pub fn to_wire(&self) -> String {
        let mut v = Vec::with_capacity(20);
        self.write(&mut v);
        String::from_utf8(v).unwrap_or_default()
    }
}

/// Mainland mobile numbers: 1[3-9]x xxxx xxxx.
pub fn phone_number(seed: u64, tag: &[u8], nums: &[u64]) -> u64 {
    let h = digest(seed, tag, nums);
    let second = 3 + (h % 7);
    10_000_000_000 + second * 1_000_000_000 + (h >> 8) % 1_000_000_000
}

/// Merchants are shared across users of a city: rank 0 is the busiest. `city` is an index
/// into [`HOME_CITIES`], or a destination index offset by 1000 for trips abroad, or
/// [`NATIONAL`] for chains and online shops that every city sees.
pub fn merchant(seed: u64, city: u64, rank: u64) -> Party {
    Party::Merchant(digest(seed, b"merchant", &[city, rank]))
}

/// `city` value of nationwide chains and online merchants in [`merchant`].
pub const NATIONAL: u64 = 999;

/// Draws a rank from a Zipf-like law over `n` items (exponent 1), by inverse transform of
/// the continuous approximation: cheap and good enough for popularity.
pub fn zipf_rank<R: Rng>(rng: &mut R, n: u64) -> u64 {
    let u: f64 = rng.gen();
    let r = ((n as f64 + 1.0).ln() * u).exp() - 1.0;
    (r as u64).min(n - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_are_real() {
        let sh = (31.2304, 121.4737);
        let bj = (39.9042, 116.4074);
        let d = distance_km(sh, bj);
        assert!((1050.0..1100.0).contains(&d), "{d}");
    }

    #[test]
    fn ids_have_their_wire_shapes() {
        assert!(Party::Merchant(7).to_wire().starts_with("m-"));
        let p = phone_number(1, b"own", &[3]);
        assert_eq!(p.to_string().len(), 11);
        assert!(p.to_string().starts_with('1'));
    }
}
