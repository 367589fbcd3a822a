//! Changelog stamps: which input position a changelog record's profile reflects.
//!
//! Every changelog record carries the header [`HEADER`]: for each input topic (in
//! `kafka.input_topics` order), the next input offset of this partition that the writing task
//! had scored when it wrote the record, as big-endian `i64`s (`-1`: nothing of that topic yet).
//!
//! Why: at-least-once writes a batch's changelog before its input offsets are committed. After
//! a crash the consumer resumes at the committed offsets, so the profiles it restores must be
//! the profiles *as of those offsets*; the newest record of a user may already include the
//! uncommitted tail, and scoring that tail again against it would learn it twice and decide
//! differently the second time. A restore therefore keeps, per user, the record with the
//! highest stamp at or behind the committed position ([`Committed::rank`]), which makes a
//! repeated event get exactly the decision it got before the crash. Choosing by stamp rather
//! than by log order also undoes a reordering by a re-sent failed delivery.
//!
//! A record's older versions survive compaction for `kafka.changelog_min_compaction_lag_ms`,
//! which bounds how long an instance may stay down after a crash and still restore exactly.

/// The header key of a changelog record's stamp.
pub const HEADER: &str = "wg.in";

/// Appends the stamp of `next` (per input topic, the next offset scored) to `out`.
pub fn encode(next: &[i64], out: &mut Vec<u8>) {
    for n in next {
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// Where a changelog record stands against the committed input position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// At or behind the committed position: a candidate. Candidates of one user are ordered
    /// by this rank (then by offset); the highest wins.
    Covered(i64),
    /// Ahead of the committed position: the events it reflects will be scored again.
    Ahead,
    /// The header is present but not a stamp.
    Malformed,
}

/// The committed input position of one partition: per input topic, the committed next
/// offset, `None` where the group has committed nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed(pub Vec<Option<i64>>);

impl Committed {
    /// Ranks a record by its stamp (`None`: no stamp header).
    ///
    /// A record without a stamp predates stamping: it is always a candidate, below every
    /// stamped one. A topic the group never committed does not hold records back: the
    /// consumer then starts at `auto.offset.reset`, and dropping profiles there would throw
    /// away baselines (a warning is logged by the caller).
    pub fn rank(&self, stamp: Option<&[u8]>) -> Standing {
        let Some(stamp) = stamp else {
            return Standing::Covered(i64::MIN);
        };
        if stamp.len() % 8 != 0 {
            return Standing::Malformed;
        }
        let mut rank: i64 = 0;
        for (i, chunk) in stamp.chunks_exact(8).enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            let next = i64::from_be_bytes(b);
            if next < -1 {
                return Standing::Malformed;
            }
            if let Some(Some(c)) = self.0.get(i) {
                if next > *c {
                    return Standing::Ahead;
                }
            }
            // Stamps of one partition grow in every component together, so any monotone
            // function orders them; the sum is one.
            rank = rank.saturating_add(next.max(0));
        }
        Standing::Covered(rank)
    }

    /// The position a partition task starts from: the committed offsets, `-1` where none.
    pub fn start(&self) -> Vec<i64> {
        self.0.iter().map(|c| c.unwrap_or(-1)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(next: &[i64]) -> Vec<u8> {
        let mut v = Vec::new();
        encode(next, &mut v);
        v
    }

    #[test]
    fn records_ahead_of_the_commit_are_held_back() {
        let c = Committed(vec![Some(100)]);
        assert_eq!(c.rank(Some(&st(&[100]))), Standing::Covered(100));
        assert_eq!(c.rank(Some(&st(&[40]))), Standing::Covered(40));
        assert_eq!(c.rank(Some(&st(&[101]))), Standing::Ahead);
        assert_eq!(c.rank(None), Standing::Covered(i64::MIN));
    }

    #[test]
    fn every_topic_must_be_covered() {
        let c = Committed(vec![Some(10), Some(5)]);
        assert_eq!(c.rank(Some(&st(&[10, 5]))), Standing::Covered(15));
        assert_eq!(c.rank(Some(&st(&[9, 6]))), Standing::Ahead);
        assert_eq!(c.rank(Some(&st(&[-1, 5]))), Standing::Covered(5));
    }

    #[test]
    fn an_uncommitted_topic_holds_nothing_back() {
        let c = Committed(vec![None]);
        assert_eq!(c.rank(Some(&st(&[7_000]))), Standing::Covered(7_000));
        assert_eq!(c.start(), vec![-1]);
    }

    #[test]
    fn malformed_stamps_are_reported() {
        let c = Committed(vec![Some(1)]);
        assert_eq!(c.rank(Some(b"abc")), Standing::Malformed);
        assert_eq!(c.rank(Some(&st(&[-5]))), Standing::Malformed);
    }
}
