//! Where profiles live: a dense slab of fixed-size [`Profile`]s behind an index keyed by the
//! 64-bit hash of the user id.
//!
//! A plain `HashMap<u64, Profile>` would double its bucket array (and so its memory) in
//! power-of-two steps; the slab grows in fixed chunks, and only the small index doubles. The
//! index holds nothing but 4-byte slab positions (5 bytes per bucket with hashbrown's control
//! byte; a `HashMap<u64, u32>` needs 17): the key it is looked up by sits in the slab beside
//! the profile. Why: at a million users the index runs at any load between 44% and 87%, and
//! every byte per bucket costs up to 2.3 bytes per user. Two user ids that hash alike would
//! share a profile; at a million users the chance of any such pair is about 3·10⁻⁸.

use std::hash::{BuildHasherDefault, Hasher};

use hashbrown::HashTable;

use super::Profile;
use crate::engine::time::Tick;

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

/// One slab cell: a profile and the user key it belongs to.
#[derive(Clone, Copy, Default)]
struct Entry {
    key: u64,
    profile: Profile,
}

/// All profiles of one partition (or of a whole replay).
#[derive(Default, Clone)]
pub struct ProfileStore {
    /// Slab positions; the hash of a position is the key stored at it (keys are already
    /// uniform 64-bit hashes, so they are their own hash).
    index: HashTable<u32>,
    chunks: Vec<Vec<Entry>>,
    free: Vec<u32>,
}

/// The cell at slab position `i`.
#[inline]
fn cell(chunks: &[Vec<Entry>], i: u32) -> &Entry {
    &chunks[i as usize / CHUNK][i as usize % CHUNK]
}

impl ProfileStore {
    /// An empty store.
    pub fn new() -> ProfileStore {
        ProfileStore::default()
    }

    /// An empty store with room for `users` profiles in its index.
    pub fn with_capacity(users: usize) -> ProfileStore {
        ProfileStore {
            index: HashTable::with_capacity(users),
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
    fn slot_mut(&mut self, i: u32) -> &mut Entry {
        &mut self.chunks[i as usize / CHUNK][i as usize % CHUNK]
    }

    /// Slab position of `key`, if held.
    #[inline]
    fn position(&self, key: u64) -> Option<u32> {
        let chunks = &self.chunks;
        self.index
            .find(key, |&i| cell(chunks, i).key == key)
            .copied()
    }

    /// The profile of `key`, if held.
    pub fn get(&self, key: u64) -> Option<&Profile> {
        self.position(key).map(|i| &cell(&self.chunks, i).profile)
    }

    /// Asks the CPU to start loading the profile of `key` into cache, without waiting for it.
    ///
    /// With a million users nearly every profile is a cache (and TLB) miss. Looking up the
    /// keys of a small batch first lets those misses overlap instead of paying them one after
    /// another; see [`crate::engine::pipeline::Engine::process_batch`].
    #[inline]
    pub fn prefetch(&self, key: u64) {
        // Candidates by control byte only: comparing keys would wait for the very cache miss
        // this is meant to start. Nearly always one candidate, the right one.
        for &i in self.index.iter_hash(key) {
            let p = cell(&self.chunks, i) as *const Entry as *const u8;
            for line in 0..std::mem::size_of::<Entry>().div_ceil(64) {
                prefetch_line(p.wrapping_add(line * 64));
            }
        }
    }

    /// The profile of `key`, created empty if absent.
    pub fn get_or_create(&mut self, key: u64) -> &mut Profile {
        let i = match self.position(key) {
            Some(i) => i,
            None => self.add(key, Profile::default()),
        };
        &mut self.slot_mut(i).profile
    }

    /// Stores `profile` under `key`, replacing any previous one (used by state restore).
    pub fn insert(&mut self, key: u64, profile: Profile) {
        match self.position(key) {
            Some(i) => self.slot_mut(i).profile = profile,
            None => {
                self.add(key, profile);
            }
        }
    }

    /// Removes the profile of `key`, returning it.
    pub fn remove(&mut self, key: u64) -> Option<Profile> {
        let chunks = &self.chunks;
        let found = self
            .index
            .find_entry(key, |&i| cell(chunks, i).key == key)
            .ok()?;
        let (i, _) = found.remove();
        let p = std::mem::take(self.slot_mut(i)).profile;
        self.free.push(i);
        Some(p)
    }

    /// Puts `profile` in a free cell under `key` (known to be absent) and indexes it.
    fn add(&mut self, key: u64, profile: Profile) -> u32 {
        let entry = Entry { key, profile };
        let i = if let Some(i) = self.free.pop() {
            *self.slot_mut(i) = entry;
            i
        } else {
            if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
                self.chunks.push(Vec::with_capacity(CHUNK));
            }
            let n = self.chunks.len() - 1;
            let chunk = &mut self.chunks[n];
            chunk.push(entry);
            (n * CHUNK + chunk.len() - 1) as u32
        };
        let chunks = &self.chunks;
        self.index.insert_unique(key, i, |&j| cell(chunks, j).key);
        i
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
        self.index.iter().map(|&i| {
            let e = cell(&self.chunks, i);
            (e.key, &e.profile)
        })
    }

    /// Bytes held by the store: slab chunks (key and profile per cell), the index's bucket
    /// array and control bytes, and the free list.
    pub fn memory_bytes(&self) -> usize {
        let slab: usize = self
            .chunks
            .iter()
            .map(|c| c.capacity() * std::mem::size_of::<Entry>())
            .sum();
        slab + self.index.allocation_size() + self.free.capacity() * 4
    }

    /// Bytes one stored profile takes in the slab (profile plus its key).
    pub const CELL_BYTES: usize = std::mem::size_of::<Entry>();
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
        assert!(s.memory_bytes() >= 10_000 * ProfileStore::CELL_BYTES);
        // 10k profiles: 3 chunks of 4096 cells, and 16384 buckets of 5 bytes at most.
        assert!(s.memory_bytes() <= 3 * 4096 * ProfileStore::CELL_BYTES + 16_384 * 5 + 64 + 4 * 16);
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
