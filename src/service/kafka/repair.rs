//! The rules of the consumer thread's repair round (see `consumer::ServiceContext::reconcile`),
//! pure so that they can be tested without a broker: which tasks to release, which assigned
//! partitions to adopt, and which to restart because nothing is fetched from them.
//!
//! Why a repair round at all: walletguard keeps its own table of partition tasks beside
//! librdkafka's assignment. They are kept equal by the rebalance callbacks, but a stall of the
//! process fences every task while the client may still hold the partitions, and a partition
//! can stay assigned while its fetch never starts (seen on tansu after a restart, minutes
//! without a record while `/readyz` said ready). The round makes the two tables agree again
//! and reports, meanwhile, what is assigned but not consumed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Tasks whose partition the client no longer has (`assigned` sorted): to be released.
pub fn stale(assigned: &[i32], tasks: impl IntoIterator<Item = i32>) -> Vec<i32> {
    let mut v: Vec<i32> = tasks
        .into_iter()
        .filter(|p| assigned.binary_search(p).is_err())
        .collect();
    v.sort_unstable();
    v
}

/// Whether a task's partition is due for a fetch check: nothing dispatched for `after`, and
/// not checked within `after` either (a check asks the broker for watermarks).
pub fn due(since_progress: Duration, since_check: Duration, after: Duration) -> bool {
    since_progress >= after && since_check >= after
}

/// Whether records wait in a partition that is not being fetched: its high watermark `high`
/// lies beyond both the offset after the last record dispatched (`next`) and the client's
/// own position, by more than one offset. The one offset of slack: a transaction's commit
/// marker occupies an offset that no record is delivered for.
pub fn records_wait(high: i64, next: i64, position: Option<i64>) -> bool {
    high > next.max(position.unwrap_or(next)) + 1
}

/// Updates `orphans` (partitions the client has assigned without a task, since when) for a
/// round at `now`, and returns those to adopt: orphaned for `grace` or more, unless the
/// instance is `suspended` after a stall. `assigned` is sorted.
pub fn orphans(
    orphans: &mut HashMap<i32, Instant>,
    assigned: &[i32],
    has_task: impl Fn(i32) -> bool,
    now: Instant,
    grace: Duration,
    suspended: bool,
) -> Vec<i32> {
    orphans.retain(|p, _| assigned.binary_search(p).is_ok() && !has_task(*p));
    for p in assigned {
        if !has_task(*p) {
            orphans.entry(*p).or_insert(now);
        }
    }
    if suspended {
        return Vec::new();
    }
    let mut v: Vec<i32> = orphans
        .iter()
        .filter(|(_, since)| now.saturating_duration_since(**since) >= grace)
        .map(|(p, _)| *p)
        .collect();
    v.sort_unstable();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_without_its_assignment_is_released() {
        assert_eq!(stale(&[0, 2, 3], [3, 1, 0, 5]), vec![1, 5]);
        assert!(stale(&[0, 1], [0, 1]).is_empty());
        assert_eq!(
            stale(&[], [4]),
            vec![4],
            "nothing assigned: every task goes"
        );
    }

    #[test]
    fn an_assigned_partition_without_a_task_is_adopted_after_the_grace() {
        let t0 = Instant::now();
        let grace = Duration::from_secs(1);
        let mut o = HashMap::new();
        let tasks = [0, 1];
        let has = |p: i32| tasks.contains(&p);
        // First seen: not yet.
        assert!(orphans(&mut o, &[0, 1, 2, 3], has, t0, grace, false).is_empty());
        assert_eq!(o.len(), 2);
        let later = t0 + grace;
        assert_eq!(
            orphans(&mut o, &[0, 1, 2, 3], has, later, grace, false),
            vec![2, 3]
        );
        // Suspended after a stall: counted, not adopted.
        assert!(orphans(&mut o, &[0, 1, 2, 3], has, later, grace, true).is_empty());
        assert_eq!(o.len(), 2, "still reported as not consumed");
        // Revoked meanwhile, or a task came: forgotten.
        assert!(orphans(&mut o, &[0, 1, 3], has, later, grace, true).is_empty());
        assert_eq!(
            o.keys().copied().collect::<Vec<_>>(),
            vec![3],
            "2 was revoked"
        );
        assert!(orphans(&mut o, &[0, 1, 3], |_| true, later, grace, false).is_empty());
        assert!(o.is_empty());
    }

    #[test]
    fn only_a_partition_idle_while_records_wait_is_unfetched() {
        let after = Duration::from_secs(20);
        assert!(
            !due(Duration::from_secs(5), Duration::from_secs(60), after),
            "recent record"
        );
        assert!(
            !due(Duration::from_secs(60), Duration::from_secs(5), after),
            "checked lately"
        );
        assert!(due(Duration::from_secs(20), Duration::from_secs(20), after));
        // Records wait beyond what was dispatched and beyond the client's position.
        assert!(records_wait(500, 100, Some(100)));
        assert!(records_wait(500, 100, None));
        // Caught up, or one commit marker past the last record: not stuck.
        assert!(!records_wait(100, 100, Some(100)));
        assert!(!records_wait(101, 100, Some(100)));
        // The client fetched beyond what reached the task (it is in flight): not stuck.
        assert!(!records_wait(500, 100, Some(500)));
    }
}
