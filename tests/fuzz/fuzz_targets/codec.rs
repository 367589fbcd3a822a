//! Any bytes as a changelog profile record: decode never panics, and a record that decodes
//! re-encodes (in the current format) to a record that decodes to the same profile.
#![no_main]

use libfuzzer_sys::fuzz_target;
use walletguard::engine::baseline::codec;
use walletguard::engine::pipeline::EngineConfig;

fuzz_target!(|data: &[u8]| {
    let params = EngineConfig::default().params();
    if let Ok(p) = codec::decode(data, &params) {
        let mut out = Vec::new();
        codec::encode(&p, &params, &mut out);
        assert_eq!(out.len(), codec::ENCODED_LEN);
        let back = codec::decode(&out, &params).expect("own encoding decodes");
        // Compare bit patterns: NaN != NaN would fail a plain comparison.
        let mut again = Vec::new();
        codec::encode(&back, &params, &mut again);
        assert_eq!(out, again);
    }
});
