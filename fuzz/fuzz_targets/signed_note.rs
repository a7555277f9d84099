//! Parses arbitrary text as a C2SP signed note (`SignedNote::parse`) and
//! opens it as a checkpoint with the fixture's audit key
//! (`open_signed_checkpoint`): a note that parses formats back to itself;
//! nothing opens, since the key signs no note here.

#![forbid(unsafe_code)]
#![no_main]

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use rkm_proto::checkpoint::{SignedNote, open_signed_checkpoint};
use rkm_proto_fuzz::fixture;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(note) = SignedNote::parse(text) {
        let mut formatted = format!("{}\n", note.text());
        for sig in note.signatures() {
            let mut blob = sig.key_id.to_vec();
            blob.extend_from_slice(&sig.signature);
            formatted.push_str(&format!(
                "\u{2014} {} {}\n",
                sig.key_name,
                base64::engine::general_purpose::STANDARD.encode(blob)
            ));
        }
        assert_eq!(formatted, text);
    }
    if let Ok(checkpoint) = open_signed_checkpoint(text, &fixture().audit_key) {
        panic!("an unsigned note opened: {checkpoint:?}");
    }
});
