//! The unit the consumer thread hands a partition task: a [`Batch`] of consumed messages,
//! copied out of librdkafka's buffers, read back as [`Incoming`] views.

use std::ops::Range;
use std::time::Instant;

/// One consumed message of a [`Batch`].
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// Index of the message's topic in `kafka.input_topics`.
    pub topic: u16,
    /// Its offset.
    pub offset: i64,
    /// Its key.
    pub key: Option<&'a [u8]>,
    /// Its value (`None` for a null value, which is dead-lettered).
    pub payload: Option<&'a [u8]>,
    /// When the consumer thread received it: the start of the latency measurement.
    pub received: Instant,
}

/// One message of a [`Batch`]: its fields, with key and payload as ranges of the arena.
#[derive(Debug, Clone)]
struct Slot {
    /// See [`Incoming::topic`].
    topic: u16,
    /// See [`Incoming::offset`].
    offset: i64,
    /// The key's bytes in the arena.
    key: Option<Range<usize>>,
    /// The value's bytes in the arena.
    payload: Option<Range<usize>>,
    /// See [`Incoming::received`].
    received: Instant,
}

/// Consumed messages of one partition, in offset order, copied out of librdkafka's buffers
/// into one arena: two allocations per batch instead of two per message.
#[derive(Debug, Default)]
pub struct Batch {
    /// Every key and payload, back to back.
    arena: Vec<u8>,
    /// The messages, in order.
    slots: Vec<Slot>,
}

impl Batch {
    /// Appends a message.
    pub fn push(
        &mut self,
        topic: u16,
        offset: i64,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        received: Instant,
    ) {
        let mut copy = |b: &[u8]| {
            let s = self.arena.len();
            self.arena.extend_from_slice(b);
            s..self.arena.len()
        };
        let key = key.map(&mut copy);
        let payload = payload.map(&mut copy);
        self.slots.push(Slot {
            topic,
            offset,
            key,
            payload,
            received,
        });
    }

    /// Messages held.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The messages, in order.
    pub fn iter(&self) -> impl Iterator<Item = Incoming<'_>> + '_ {
        self.slots.iter().map(|s| Incoming {
            topic: s.topic,
            offset: s.offset,
            key: s.key.clone().map(|r| &self.arena[r]),
            payload: s.payload.clone().map(|r| &self.arena[r]),
            received: s.received,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A key or payload as a test compares it.
    type Bytes<'a> = Option<&'a [u8]>;

    #[test]
    fn an_empty_batch_has_nothing() {
        let b = Batch::default();
        assert!(b.is_empty());
        assert_eq!(b.len(), 0);
        assert_eq!(b.iter().count(), 0);
    }

    #[test]
    fn messages_come_back_in_push_order_with_their_bytes() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(3);
        let mut b = Batch::default();
        b.push(0, 10, Some(b"alice"), Some(b"{\"a\":1}"), t0);
        b.push(1, 7, Some(b"bob"), Some(b"{}"), t1);
        // Offsets are carried as given, not sorted: the consumer pushes them in order.
        b.push(0, 11, Some(b""), Some(b"x"), t1);
        assert!(!b.is_empty());
        assert_eq!(b.len(), 3);
        let got: Vec<(u16, i64, Bytes<'_>, Bytes<'_>, Instant)> = b
            .iter()
            .map(|m| (m.topic, m.offset, m.key, m.payload, m.received))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, 10, Some(&b"alice"[..]), Some(&b"{\"a\":1}"[..]), t0),
                (1, 7, Some(&b"bob"[..]), Some(&b"{}"[..]), t1),
                (0, 11, Some(&b""[..]), Some(&b"x"[..]), t1),
            ]
        );
    }

    #[test]
    fn null_keys_and_payloads_stay_null_and_empty_ones_stay_empty() {
        let now = Instant::now();
        let mut b = Batch::default();
        b.push(0, 1, None, None, now);
        b.push(0, 2, Some(b"k"), None, now);
        b.push(0, 3, None, Some(b"v"), now);
        b.push(0, 4, Some(b""), Some(b""), now);
        let got: Vec<(Bytes<'_>, Bytes<'_>)> = b.iter().map(|m| (m.key, m.payload)).collect();
        assert_eq!(
            got,
            vec![
                (None, None),
                (Some(&b"k"[..]), None),
                (None, Some(&b"v"[..])),
                (Some(&b""[..]), Some(&b""[..])),
            ]
        );
    }

    #[test]
    fn a_taken_batch_leaves_an_empty_one_behind() {
        // The consumer thread hands batches over with `mem::take`.
        let mut b = Batch::default();
        b.push(0, 5, Some(b"k"), Some(b"v"), Instant::now());
        let taken = std::mem::take(&mut b);
        assert!(b.is_empty());
        assert_eq!(taken.len(), 1);
        b.push(2, 6, Some(b"k2"), Some(b"v2"), Instant::now());
        let m = b
            .iter()
            .next()
            .map(|m| (m.topic, m.offset, m.key, m.payload));
        assert_eq!(m, Some((2, 6, Some(&b"k2"[..]), Some(&b"v2"[..]))));
    }
}
