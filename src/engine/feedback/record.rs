//! A user's whole changelog value: the profile ([`crate::engine::baseline::codec`]) and, for a user
//! with feedback state, the [`Case`] right after it (its own magic `b"WC"`). Here, above both
//! codecs, so that the profile's codec knows nothing of feedback.

use super::{Case, CaseError};
use crate::engine::baseline::codec::{self, CodecError};
use crate::engine::baseline::{Params, Profile};

/// Why a changelog value did not decode.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecordError {
    /// The profile does not decode.
    #[error(transparent)]
    Profile(#[from] CodecError),
    /// The feedback case after the profile does not decode.
    #[error(transparent)]
    Case(#[from] CaseError),
}

/// Appends a user's whole changelog value: the profile ([`codec::encode`]) and the user's
/// case, if any. Users without a case write exactly what [`codec::encode`] writes.
pub fn encode_record(profile: &Profile, case: Option<&Case>, params: &Params, out: &mut Vec<u8>) {
    codec::encode(profile, params, out);
    if let Some(c) = case {
        c.encode(out);
    }
}

/// Decodes a value written by [`encode_record`] (or [`codec::encode`], of any release).
pub fn decode_record(
    bytes: &[u8],
    params: &Params,
) -> Result<(Profile, Option<Case>), RecordError> {
    // Cases follow the profile since version 5; the profile's length comes from its version.
    match codec::profile_len(bytes).and_then(|len| Some((len, bytes.get(len..)?))) {
        Some((len, rest)) if !rest.is_empty() && Case::is_case_record(rest) => {
            let profile = codec::decode(&bytes[..len], params)?;
            Ok((profile, Some(Case::decode(rest)?)))
        }
        _ => Ok((codec::decode(bytes, params)?, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::pipeline::EngineConfig;

    #[test]
    fn a_record_carries_its_users_feedback_case_and_reads_without_one() {
        let p = EngineConfig::default().params();
        let prof = Profile {
            last_seen: 42,
            ..Profile::default()
        };
        let case = Case {
            failures: 1,
            failures_since: 40,
            ..Case::default()
        };
        let mut with = Vec::new();
        encode_record(&prof, Some(&case), &p, &mut with);
        let mut without = Vec::new();
        encode_record(&prof, None, &p, &mut without);
        let mut plain = Vec::new();
        codec::encode(&prof, &p, &mut plain);
        assert_eq!(
            without, plain,
            "no case: the bytes of every earlier release"
        );
        assert_eq!(decode_record(&with, &p), Ok((prof, Some(case))));
        assert_eq!(decode_record(&without, &p), Ok((prof, None)));
        // A damaged case is an error, never a profile without it; other trailing bytes are
        // too long, as before.
        assert!(matches!(
            decode_record(&with[..with.len() - 1], &p),
            Err(RecordError::Case(_))
        ));
        let mut junk = plain.clone();
        junk.push(7);
        assert!(matches!(
            decode_record(&junk, &p),
            Err(RecordError::Profile(CodecError::TooLong { .. }))
        ));
    }

    #[test]
    fn a_version_5_record_with_a_case_still_decodes() {
        let p = codec::tests::pinned_params();
        let (mut v5, want) = codec::tests::v5_sample();
        let case = Case {
            failures: 2,
            failures_since: 40,
            ..Case::default()
        };
        case.encode(&mut v5);
        assert_eq!(decode_record(&v5, &p), Ok((want, Some(case))));
    }
}
