//! Changelog stamps: which input position a changelog record's profile reflects.
//!
//! Every changelog record carries the header [`HEADER`]: for each input topic (in
//! `kafka.input_topics` order), the next input offset of this partition that the writing task
//! had scored when it wrote the record, as big-endian `i64`s (`-1`: nothing of that topic yet).
//!
//! Why: at-least-once writes a batch's changelog before its input offsets are committed. After
//! a crash the consumer resumes at the committed offsets (or, with none, at the partition's
//! first offset), so the profiles it restores must be the profiles *as of that position*; the
//! newest record of a user may already include the uncommitted tail, and scoring that tail
//! again against it would learn it twice and decide differently the second time. A restore
//! therefore keeps, per user, the record with the highest stamp at or behind the start
//! position ([`Position::rank`]), which makes a repeated event get exactly the decision it got
//! before the crash. Choosing by stamp rather than by log order also undoes a reordering by a
//! re-sent failed delivery. The consumer is assigned that same position explicitly, so the
//! two can never disagree.
//!
//! A record's older versions survive compaction for `kafka.changelog_min_compaction_lag_ms`,
//! which bounds how long an instance may stay down after a crash and still restore exactly.

/// The header key of the stamp of a changelog record keyed by its user id (records written
/// before profiles had a lifecycle; still read, and migrated on restore).
pub const HEADER: &str = "wg.in";

/// The header key of the stamp of a changelog record keyed by the user's 64-bit key
/// ([`crate::engine::baseline::keys::user_key`], 8 bytes big-endian). Why a hash and not the user id:
/// a profile removed by its lifecycle (idle, or evicted by the cap) must leave a tombstone
/// under the key its record has, and the store keeps only the hash, not the id.
pub const HEADER_HASHED: &str = "wg.inh";

/// The header key of the stamp of a partition's learned population
/// ([`crate::engine::baseline::Population`]), written under [`POPULATION_KEY`] at every changelog write
/// that follows a change of it. It is restored like a profile: the best version at or behind the
/// start position, so a restarted partition has the population its profiles were scored with.
pub const HEADER_POPULATION: &str = "wg.pop";

/// The key of a partition's population record (not 8 bytes, so never a user's key).
pub const POPULATION_KEY: &[u8] = b"walletguard.population";

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

/// The input position a partition task starts from: per input topic, the first offset it
/// will score (the group's committed offset, else the partition's first offset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position(pub Vec<i64>);

impl Position {
    /// Ranks a record by its stamp (`None`: no stamp header).
    ///
    /// A record without a stamp predates stamping: it is always a candidate, below every
    /// stamped one.
    pub fn rank(&self, stamp: Option<&[u8]>) -> Standing {
        let Some(stamp) = stamp else {
            return Standing::Covered(i64::MIN);
        };
        // A stamp with fewer or more topics than the running config (input topics were added
        // or removed since it was written) is ranked on the topics both have: a topic it has
        // no component for, it reflects nothing of.
        if stamp.is_empty() || stamp.len() % 8 != 0 {
            return Standing::Malformed;
        }
        let mut rank: i64 = 0;
        for (chunk, start) in stamp.chunks_exact(8).zip(&self.0) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            let next = i64::from_be_bytes(b);
            if next < -1 {
                return Standing::Malformed;
            }
            if next > *start {
                return Standing::Ahead;
            }
            // Stamps of one partition grow in every component together, so any monotone
            // function orders them; the sum is one.
            rank = rank.saturating_add(next.max(0));
        }
        Standing::Covered(rank)
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
    fn records_ahead_of_the_start_are_held_back() {
        let c = Position(vec![100]);
        assert_eq!(c.rank(Some(&st(&[100]))), Standing::Covered(100));
        assert_eq!(c.rank(Some(&st(&[40]))), Standing::Covered(40));
        assert_eq!(c.rank(Some(&st(&[101]))), Standing::Ahead);
        assert_eq!(c.rank(None), Standing::Covered(i64::MIN));
    }

    #[test]
    fn every_topic_must_be_covered() {
        let c = Position(vec![10, 5]);
        assert_eq!(c.rank(Some(&st(&[10, 5]))), Standing::Covered(15));
        assert_eq!(c.rank(Some(&st(&[9, 6]))), Standing::Ahead);
        assert_eq!(c.rank(Some(&st(&[-1, 5]))), Standing::Covered(5));
    }

    #[test]
    fn from_the_log_start_everything_stamped_is_ahead() {
        // No committed offset: the task starts at the first offset, so every profile that
        // reflects any event is held back and the log is scored again from scratch.
        let c = Position(vec![0]);
        assert_eq!(c.rank(Some(&st(&[7_000]))), Standing::Ahead);
        assert_eq!(c.rank(Some(&st(&[1]))), Standing::Ahead);
        assert_eq!(c.rank(Some(&st(&[-1]))), Standing::Covered(0));
    }

    #[test]
    fn malformed_stamps_are_reported() {
        let c = Position(vec![1]);
        assert_eq!(c.rank(Some(b"abc")), Standing::Malformed);
        assert_eq!(c.rank(Some(&st(&[-5]))), Standing::Malformed);
        assert_eq!(
            c.rank(Some(&st(&[1, 7]))),
            Standing::Covered(1),
            "an input topic was removed"
        );
        let two = Position(vec![5, 5]);
        assert_eq!(
            two.rank(Some(&st(&[4]))),
            Standing::Covered(4),
            "an input topic was added"
        );
        assert_eq!(c.rank(Some(b"")), Standing::Malformed);
    }
}
