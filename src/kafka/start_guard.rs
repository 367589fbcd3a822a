//! Makes a partition start exactly where it was assigned, even on a broker that answers a
//! fetch from the middle of a record batch with the *next* batch.
//!
//! tansu 0.6 does that (shown without walletguard by `examples/tansu_fetch_probe.rs`): a
//! consumer that resumes at a committed offset inside a producer's batch is silently handed
//! the batch after it, and the rest of the batch is never scored. Since the records before
//! the committed offset were already decided, the fix is to ask for an earlier offset, which
//! lands in an earlier batch, and to drop what comes before the start. The guard is the pure
//! decision; the consumer thread does the seeking.
//!
//! It only watches the first records after an assignment. A start that stays out of reach
//! (retention deleted it, or the input is compacted or transactional and the offset holds no
//! record) is accepted after [`MAX_BACK`] offsets of search, logged and counted.

/// The furthest back the guard seeks before accepting a gap.
pub const MAX_BACK: i64 = 1 << 16;

/// What to do with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Score it.
    Take,
    /// Drop it: it lies before the start (decided before the last commit).
    Drop,
    /// Drop it and seek to this offset: the broker skipped records after the start.
    Seek(i64),
    /// Score it, although records between the start and it were never delivered.
    Gap(i64),
}

/// One input topic of one partition, from its assignment until its start is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartGuard {
    /// The offset the partition was assigned to start at; `None` once reached.
    want: Option<i64>,
    /// How far back the last seek went.
    back: i64,
}

impl StartGuard {
    /// A guard for a partition assigned to start at `start`.
    pub fn new(start: i64) -> StartGuard {
        StartGuard {
            want: Some(start),
            back: 0,
        }
    }

    /// Judges the record at `offset`.
    pub fn check(&mut self, offset: i64) -> Verdict {
        let Some(want) = self.want else {
            return Verdict::Take;
        };
        if offset < want {
            return Verdict::Drop;
        }
        if offset == want {
            self.want = None;
            return Verdict::Take;
        }
        let next_back = if self.back == 0 { 1 } else { self.back * 4 };
        if next_back > MAX_BACK || want == 0 {
            self.want = None;
            return Verdict::Gap(offset - want);
        }
        self.back = next_back;
        Verdict::Seek((want - next_back).max(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_offset_is_taken() {
        let mut g = StartGuard::new(150);
        assert_eq!(g.check(150), Verdict::Take);
        assert_eq!(g.check(151), Verdict::Take);
        assert_eq!(
            g.check(400),
            Verdict::Take,
            "later gaps are not the guard's business"
        );
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
        assert_eq!(g.check(200), Verdict::Take);
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
