//! Makes a partition deliver every record from where it was assigned, in order, even on a
//! broker that answers a fetch from the middle of a record batch with the *next* batch.
//!
//! tansu 0.6 does that (shown without walletguard by `examples/tansu_fetch_probe.rs`): a
//! consumer that resumes at a committed offset inside a producer's batch is silently handed
//! the batch after it, and the rest of the batch is never scored. The same happens in the
//! middle of a stream whenever the client's next fetch starts inside a batch (a response cut
//! short by the fetch size limits, a catch-up after a restart): a crash soak with 20 kills
//! once decided 513 events differently after a restart because a stretch of records was never
//! learned. So the guard follows every record, not only the first: a record beyond the one
//! expected means the broker skipped, and the fix is to ask for an earlier offset, which lands
//! in an earlier batch, and to drop what comes before the expected one. The guard is the pure
//! decision; the consumer thread does the seeking.
//!
//! A gap can also be real: retention or compaction deleted records, or a transaction's commit
//! marker occupies an offset no record is delivered for. A gap is accepted as real when the
//! broker, asked from before it, delivers records below the expected offset and then one
//! beyond it (it read over the gap), or after [`MAX_BACK`] offsets of search. Gaps of one
//! offset are what transactional producers leave after every transaction; once
//! [`MARKERS_TRUSTED`] of them were confirmed real, later ones are accepted without a seek.

/// The furthest back the guard seeks before accepting a gap.
pub const MAX_BACK: i64 = 1 << 16;

/// One-offset gaps confirmed real after which further ones are taken for commit markers.
pub const MARKERS_TRUSTED: u32 = 3;

/// What to do with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Score it.
    Take,
    /// Drop it: it lies before the expected offset (decided before the last commit, or
    /// already taken).
    Drop,
    /// Drop it and seek to this offset: the broker skipped records before it.
    Seek(i64),
    /// Score it, although this many offsets before it hold no record (a real gap).
    Gap(i64),
}

/// One input topic of one partition, from its assignment on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartGuard {
    /// The offset of the next record to take.
    expect: i64,
    /// How far back the last seek went (0: not searching).
    back: i64,
    /// A record below `expect` arrived since the last seek: the broker reads from before it.
    below: bool,
    /// One-offset gaps confirmed real.
    markers: u32,
}

impl StartGuard {
    /// A guard for a partition assigned to start at `start`.
    pub fn new(start: i64) -> StartGuard {
        StartGuard {
            expect: start,
            back: 0,
            below: false,
            markers: 0,
        }
    }

    /// The offset of the next record to take.
    pub fn expect(&self) -> i64 {
        self.expect
    }

    fn take(&mut self, offset: i64) {
        self.expect = offset + 1;
        self.back = 0;
        self.below = false;
    }

    /// Judges the record at `offset`.
    pub fn check(&mut self, offset: i64) -> Verdict {
        if offset == self.expect {
            self.take(offset);
            return Verdict::Take;
        }
        if offset < self.expect {
            if self.back > 0 {
                self.below = true;
            }
            return Verdict::Drop;
        }
        let gap = offset - self.expect;
        let trusted_marker = gap == 1 && self.markers >= MARKERS_TRUSTED;
        if self.below || self.expect == 0 || trusted_marker {
            // Read over from below (or nothing lies before offset 0): the gap is real.
            if gap == 1 && self.below {
                self.markers += 1;
            }
            self.take(offset);
            return Verdict::Gap(gap);
        }
        let next_back = if self.back == 0 { 1 } else { self.back * 4 };
        if next_back > MAX_BACK {
            self.take(offset);
            return Verdict::Gap(gap);
        }
        self.back = next_back;
        Verdict::Seek((self.expect - next_back).max(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_offset_is_taken_and_then_every_next_one() {
        let mut g = StartGuard::new(150);
        assert_eq!(g.check(150), Verdict::Take);
        assert_eq!(g.check(151), Verdict::Take);
        assert_eq!(g.check(151), Verdict::Drop, "a record twice is taken once");
        assert_eq!(g.expect(), 152);
    }

    #[test]
    fn a_skipped_batch_is_fetched_again_and_the_head_dropped() {
        // Batches [100, 200) and [200, 300); start 150; the broker answers 150 with 200.
        let mut g = StartGuard::new(150);
        assert_eq!(g.check(200), Verdict::Seek(149));
        // 149 is inside [100, 200): answered with 200 again; go further back.
        assert_eq!(g.check(200), Verdict::Seek(146));
        assert_eq!(g.check(200), Verdict::Seek(134));
        assert_eq!(g.check(200), Verdict::Seek(86));
        // 86 is inside [0, 100): answered with [100, 200).
        for o in 100..150 {
            assert_eq!(g.check(o), Verdict::Drop);
        }
        assert_eq!(g.check(150), Verdict::Take);
        assert_eq!(
            g.check(200),
            Verdict::Seek(150),
            "the rest of [100, 200) is still wanted"
        );
    }

    #[test]
    fn a_skip_in_the_middle_of_the_stream_is_fetched_again() {
        // Taken up to 340; the client's next fetch starts at 341, inside batch [300, 400), and
        // the broker answers with [400, 500).
        let mut g = StartGuard::new(300);
        for o in 300..=340 {
            assert_eq!(g.check(o), Verdict::Take);
        }
        assert_eq!(g.check(400), Verdict::Seek(340));
        // 340 lies in [300, 400): the batch comes again; what was taken is dropped.
        for o in 300..341 {
            assert_eq!(g.check(o), Verdict::Drop);
        }
        for o in 341..400 {
            assert_eq!(g.check(o), Verdict::Take);
        }
        assert_eq!(g.check(400), Verdict::Take);
    }

    #[test]
    fn a_real_gap_is_accepted_once_read_over_from_below() {
        // Offset 41 holds a commit marker: asked from 40, the broker delivers 40, then 42.
        let mut g = StartGuard::new(30);
        for o in 30..41 {
            assert_eq!(g.check(o), Verdict::Take);
        }
        assert_eq!(g.check(42), Verdict::Seek(40));
        assert_eq!(g.check(40), Verdict::Drop);
        assert_eq!(g.check(42), Verdict::Gap(1));
        assert_eq!(g.check(43), Verdict::Take);
        // After MARKERS_TRUSTED confirmed markers, one-offset gaps are taken without a seek;
        // a wider gap is still checked.
        let mut next = 44;
        for _ in 1..MARKERS_TRUSTED {
            assert_eq!(g.check(next + 1), Verdict::Seek(next - 1));
            assert_eq!(g.check(next - 1), Verdict::Drop);
            assert_eq!(g.check(next + 1), Verdict::Gap(1));
            next += 2;
        }
        assert_eq!(g.check(next + 1), Verdict::Gap(1), "a trusted marker");
        next += 2;
        assert_eq!(g.check(next + 5), Verdict::Seek(next - 1));
    }

    #[test]
    fn an_unreachable_start_is_accepted_as_a_gap() {
        let mut g = StartGuard::new(1_000_000);
        let mut seeks = 0;
        loop {
            match g.check(2_000_000) {
                Verdict::Seek(o) => {
                    assert!(o < 1_000_000);
                    seeks += 1;
                }
                Verdict::Gap(n) => {
                    assert_eq!(n, 1_000_000);
                    break;
                }
                v => panic!("{v:?}"),
            }
        }
        assert!(seeks <= 10, "{seeks} seeks");
        assert_eq!(g.check(2_000_001), Verdict::Take);
        let mut at_zero = StartGuard::new(0);
        assert_eq!(at_zero.check(5), Verdict::Gap(5), "nothing before offset 0");
    }
}
