//! A bounded memory of recent event ids, so a repeated `event_id` is not learned twice.
//!
//! Two generations of hash sets: new ids go into the current one; when it holds half the
//! window, it becomes the previous one and the old previous is dropped. Memory is bounded by
//! the window, every id is remembered for at least half of it, and there is no per-entry
//! timestamp to maintain.

use std::collections::HashSet;
use std::hash::BuildHasherDefault;

use crate::baseline::store::IdentityHasher;

type Set = HashSet<u64, BuildHasherDefault<IdentityHasher>>;

/// See the module docs.
#[derive(Default)]
pub struct Dedup {
    current: Set,
    previous: Set,
    half: usize,
}

impl Dedup {
    /// Remembers up to `window` ids (at least `window / 2` at any time). 0 disables it.
    pub fn new(window: usize) -> Dedup {
        Dedup {
            current: Set::default(),
            previous: Set::default(),
            half: window / 2,
        }
    }

    /// Records `id`; returns true if it was already remembered.
    pub fn check_and_insert(&mut self, id: u64) -> bool {
        if self.half == 0 {
            return false;
        }
        if self.previous.contains(&id) || !self.current.insert(id) {
            return true;
        }
        if self.current.len() >= self.half {
            // Swap rather than take, so both generations keep their capacity.
            std::mem::swap(&mut self.previous, &mut self.current);
            self.current.clear();
        }
        false
    }

    /// Ids currently remembered.
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_within_the_window_and_forgets_beyond() {
        let mut d = Dedup::new(100);
        for i in 1..=50u64 {
            assert!(!d.check_and_insert(i));
        }
        assert!(d.check_and_insert(10), "still in the previous generation");
        for i in 51..=150u64 {
            d.check_and_insert(i);
        }
        assert!(!d.check_and_insert(10), "two generations later it is gone");
        assert!(d.len() <= 100);
        let mut off = Dedup::new(0);
        assert!(!off.check_and_insert(1));
        assert!(!off.check_and_insert(1));
    }
}
