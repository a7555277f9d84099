//! Parses arbitrary text as a custodian card (`CustodianCard::parse`): what
//! parses is valid and parses back from its own JSON.

#![forbid(unsafe_code)]
#![no_main]

use libfuzzer_sys::fuzz_target;
use rkm_proto::custodian_card::CustodianCard;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(card) = CustodianCard::parse(text) {
        card.validate().unwrap();
        assert_eq!(CustodianCard::parse(&card.to_json()), Ok(card));
    }
});
