//! Parses arbitrary text as an RFC 3339 time (`unix_time_from_rfc3339`):
//! a time that parses formats (`rfc3339_from_unix`) to text that parses to
//! the same instant.

#![forbid(unsafe_code)]
#![no_main]

use libfuzzer_sys::fuzz_target;
use rkm_proto::recovery_request::{rfc3339_from_unix, unix_time_from_rfc3339};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(unix) = unix_time_from_rfc3339(text)
        && let Some(formatted) = rfc3339_from_unix(unix)
    {
        assert_eq!(unix_time_from_rfc3339(&formatted), Some(unix));
    }
});
