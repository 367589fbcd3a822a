//! Where profiles live: a dense slab of fixed-size [`Profile`]s behind an index keyed by the
//! 64-bit hash of the user id.
//!
//! A plain `HashMap<u64, Profile>` would double its bucket array (and so its memory) in
//! power-of-two steps; the slab grows in fixed chunks, and only the small index (12 bytes per
//! bucket) doubles. Two user ids that hash alike would share a profile; at a million users the
//! chance of any such pair is about 3·10⁻⁸.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::Profile;
use crate::time::Tick;

/// Profiles per slab chunk.
const CHUNK: usize = 4096;

/// Hasher for keys that are already uniform 64-bit hashes.
#[derive(Default, Clone, Copy)]
pub struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are used; fold anything else in for completeness.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ *b as u64;
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// Hasher builder for maps and sets keyed by user keys (already uniform hashes).
pub type BuildIdentity = BuildHasherDefault<IdentityHasher>;

type Index = HashMap<u64, u32, BuildIdentity>;

/// All profiles of one partition (or of a whole replay).
#[derive(Default)]
pub struct ProfileStore {
    index: Index,
    chunks: Vec<Vec<Profile>>,
    free: Vec<u32>,
}

impl ProfileStore {
    /// An empty store.
    pub fn new() -> ProfileStore {
        ProfileStore::default()
    }

    /// An empty store with room for `users` profiles in its index.
    pub fn with_capacity(users: usize) -> ProfileStore {
        ProfileStore {
            index: Index::with_capacity_and_hasher(users, Default::default()),
            chunks: Vec::new(),
            free: Vec::new(),
        }
    }

    /// Number of profiles held.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when no profile is held.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    #[inline]
    fn slot(&self, i: u32) -> &Profile {
        &self.chunks[i as usize / CHUNK][i as usize % CHUNK]
    }

    #[inline]
    fn slot_mut(&mut self, i: u32) -> &mut Profile {
        &mut self.chunks[i as usize / CHUNK][i as usize % CHUNK]
    }

    /// The profile of `key`, if held.
    pub fn get(&self, key: u64) -> Option<&Profile> {
        self.index.get(&key).map(|i| self.slot(*i))
    }

    /// Asks the CPU to start loading the profile of `key` into cache, without waiting for it.
    ///
    /// With a million users nearly every profile is a cache (and TLB) miss. Looking up the
    /// keys of a small batch first lets those misses overlap instead of paying them one after
    /// another; see [`crate::pipeline::Engine::process_batch`].
    #[inline]
    pub fn prefetch(&self, key: u64) {
        if let Some(i) = self.index.get(&key) {
            let p = self.slot(*i) as *const Profile as *const u8;
            for line in 0..std::mem::size_of::<Profile>().div_ceil(64) {
                prefetch_line(p.wrapping_add(line * 64));
            }
        }
    }

    /// The profile of `key`, created empty if absent.
    pub fn get_or_create(&mut self, key: u64) -> &mut Profile {
        let i = match self.index.get(&key) {
            Some(i) => *i,
            None => {
                let i = self.alloc(Profile::default());
                self.index.insert(key, i);
                i
            }
        };
        self.slot_mut(i)
    }

    /// Stores `profile` under `key`, replacing any previous one (used by state restore).
    pub fn insert(&mut self, key: u64, profile: Profile) {
        match self.index.get(&key) {
            Some(i) => *self.slot_mut(*i) = profile,
            None => {
                let i = self.alloc(profile);
                self.index.insert(key, i);
            }
        }
    }

    /// Removes the profile of `key`, returning it.
    pub fn remove(&mut self, key: u64) -> Option<Profile> {
        let i = self.index.remove(&key)?;
        let p = *self.slot(i);
        *self.slot_mut(i) = Profile::default();
        self.free.push(i);
        Some(p)
    }

    fn alloc(&mut self, p: Profile) -> u32 {
        if let Some(i) = self.free.pop() {
            *self.slot_mut(i) = p;
            return i;
        }
        if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        let n = self.chunks.len() - 1;
        let chunk = &mut self.chunks[n];
        chunk.push(p);
        (n * CHUNK + chunk.len() - 1) as u32
    }

    /// Removes every profile whose user last acted before `cutoff` (event time), returning
    /// their keys in ascending order (so the tombstones a caller writes come out the same in
    /// every run).
    pub fn remove_idle(&mut self, cutoff: Tick) -> Vec<u64> {
        let gone = self
            .iter()
            .filter(|(_, p)| p.last_activity() < cutoff)
            .map(|(k, _)| k)
            .collect();
        self.remove_all(gone)
    }

    /// Removes the least recently active profiles (ties broken by key) until at most
    /// `keep` remain, returning the removed keys in ascending order. O(n): callers evict
    /// down to a margin below their cap so that it runs rarely.
    pub fn evict_to(&mut self, keep: usize) -> Vec<u64> {
        let n = self.len();
        if n <= keep {
            return Vec::new();
        }
        let mut by_age: Vec<(Tick, u64)> =
            self.iter().map(|(k, p)| (p.last_activity(), k)).collect();
        let cut = n - keep;
        by_age.select_nth_unstable(cut - 1);
        let gone = by_age[..cut].iter().map(|(_, k)| *k).collect();
        self.remove_all(gone)
    }

    /// Removes `keys`, returning them in ascending order.
    fn remove_all(&mut self, mut keys: Vec<u64>) -> Vec<u64> {
        keys.sort_unstable();
        for k in &keys {
            self.remove(*k);
        }
        keys
    }

    /// Iterates over `(key, profile)`.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Profile)> {
        self.index.iter().map(|(k, i)| (*k, self.slot(*i)))
    }

    /// Bytes held by the store: slab chunks plus the index's bucket array and control bytes.
    pub fn memory_bytes(&self) -> usize {
        let slab: usize = self
            .chunks
            .iter()
            .map(|c| c.capacity() * std::mem::size_of::<Profile>())
            .sum();
        let buckets = if self.index.capacity() == 0 {
            0
        } else {
            // hashbrown keeps capacity at 7/8 of a power-of-two bucket count.
            (self.index.capacity() * 8 / 7 + 1).next_power_of_two()
        };
        let index = buckets * (std::mem::size_of::<(u64, u32)>() + 1);
        slab + index + self.free.capacity() * 4
    }
}

#[inline(always)]
fn prefetch_line(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it never faults and does not dereference in the language
    // sense, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p as *const i8, std::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_remove_reuse() {
        let mut s = ProfileStore::new();
        for k in 1..=10_000u64 {
            s.get_or_create(k).last_seen = k as u32;
        }
        assert_eq!(s.len(), 10_000);
        assert_eq!(s.get(77).unwrap().last_seen, 77);
        assert_eq!(s.remove(77).unwrap().last_seen, 77);
        assert!(s.get(77).is_none());
        let fresh = s.get_or_create(123_456);
        assert_eq!(fresh.last_seen, 0, "reused slot is reset");
        assert_eq!(s.len(), 10_000);
        assert_eq!(s.chunks.len(), 3, "10k profiles in 4096-profile chunks");
        assert_eq!(s.iter().count(), 10_000);
        assert!(s.memory_bytes() >= 10_000 * Profile::SIZE);
    }

    #[test]
    fn idle_and_least_recent_profiles_go() {
        let mut s = ProfileStore::new();
        for k in 1..=100u64 {
            let p = s.get_or_create(k);
            p.fast_at = 1_000 + k as u32;
        }
        let gone = s.remove_idle(1_011);
        assert_eq!(gone, (1..=10).collect::<Vec<u64>>(), "acted before 1011");
        assert_eq!(s.len(), 90);
        // Ties at one time are broken by key, so eviction is the same in every run.
        for k in 200..210u64 {
            s.get_or_create(k).fast_at = 1_050;
        }
        let gone = s.evict_to(80);
        assert_eq!(s.len(), 80);
        assert_eq!(gone, (11..=30).collect::<Vec<u64>>());
        assert!(s.get(31).is_some() && s.get(30).is_none());
        assert!(s.evict_to(1_000).is_empty());
        // Freed slots are reused: the slab does not grow under churn.
        let chunks = s.chunks.len();
        for k in 1_000..1_100u64 {
            s.get_or_create(k);
            s.evict_to(80);
        }
        assert_eq!(s.chunks.len(), chunks);
    }
}
