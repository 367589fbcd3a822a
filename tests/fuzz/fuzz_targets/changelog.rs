//! Any bytes as a changelog partition: split into records (key, stamp headers, value), each
//! applied through the restore's bookkeeping. Never a panic, and every record is counted once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use walletguard::service::kafka::restore::{Book, ChangelogRecord};
use walletguard::service::kafka::stamp::Position;
use walletguard::engine::pipeline::{EngineConfig, State};

/// Takes a length byte and that many bytes (`None`-able by length 255).
fn field<'a>(data: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (&n, rest) = data.split_first()?;
    if n == 255 {
        *data = rest;
        return None;
    }
    // Lengths above 127 stretch to cover whole encoded profiles (256 bytes and more).
    let n = if n > 127 {
        (n as usize - 127) * 4
    } else {
        n as usize
    };
    let n = n.min(rest.len());
    let (f, rest) = rest.split_at(n);
    *data = rest;
    Some(f)
}

fuzz_target!(|data: &[u8]| {
    let cfg = EngineConfig::default();
    let params = cfg.params();
    let mut state = State::new(&cfg.prior);
    let mut book = Book::default();
    let mut data = data;
    let start = field(&mut data)
        .and_then(|b| b.get(..8))
        .map(|b| i64::from_be_bytes(b.try_into().unwrap_or([0; 8])))
        .unwrap_or(100);
    let position = Position(vec![start]);
    let mut offset = 0i64;
    while !data.is_empty() {
        let rec = ChangelogRecord {
            offset,
            key: field(&mut data),
            stamp_hashed: field(&mut data),
            stamp_legacy: field(&mut data),
            stamp_population: field(&mut data),
            value: field(&mut data),
        };
        let _ = book.apply(&rec, &position, &params, &mut state);
        offset += 1;
    }
    let c = book.counts;
    assert_eq!(
        c.records,
        c.ahead + c.bad_records + c.tombstones + c.applied + c.superseded + c.populations
    );
    assert_eq!(c.records, offset as u64);
});
