//! The daemon's timestamps come from `encoding::time` (they used to come from
//! humantime): every audit entry, deadline and attestation time must keep the
//! exact text it had, since entries are hashed as stored and compared as text.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use rkm_proto::encoding::time::{format_rfc3339_millis, format_rfc3339_seconds};

fn at(seconds: u64, nanos: u32) -> SystemTime {
    UNIX_EPOCH + Duration::new(seconds, nanos)
}

#[test]
fn formats_match_humantime_at_known_edges() {
    // The epoch, a leap day, the last second of a year, and a millisecond
    // boundary that must truncate rather than round.
    for time in [
        at(0, 0),
        at(951_782_400, 0),
        at(1_704_067_199, 999_999_999),
        at(1_764_633_600, 1_000_000),
        at(4_102_444_800, 999_000),
    ] {
        assert_eq!(
            format_rfc3339_seconds(time),
            humantime::format_rfc3339_seconds(time).to_string()
        );
        assert_eq!(
            format_rfc3339_millis(time),
            humantime::format_rfc3339_millis(time).to_string()
        );
    }
    assert_eq!(
        format_rfc3339_millis(at(0, 999_999)),
        "1970-01-01T00:00:00.000Z"
    );
}

proptest! {
    #[test]
    fn formats_match_humantime_anywhere_before_10000(seconds in 0u64..253_402_300_799, nanos in 0u32..1_000_000_000) {
        let time = at(seconds, nanos);
        prop_assert_eq!(format_rfc3339_seconds(time), humantime::format_rfc3339_seconds(time).to_string());
        prop_assert_eq!(format_rfc3339_millis(time), humantime::format_rfc3339_millis(time).to_string());
    }
}
