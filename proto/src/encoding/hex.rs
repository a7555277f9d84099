//! Lowercase hex, the canonical spelling of bytes in every rkm record: a
//! record spelled with uppercase digits decodes to the same bytes, so it is
//! refused rather than accepted as a second spelling of signed data.

use crate::encoding::field::{FieldError, invalid};

/// Decodes lowercase hex only.
pub(crate) fn decode_lower_hex(text: &str) -> Option<Vec<u8>> {
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    hex::decode(text).ok()
}

/// Decodes exactly 64 lowercase hex digits.
pub(crate) fn decode_hex32(text: &str) -> Option<[u8; 32]> {
    decode_lower_hex(text)?.try_into().ok()
}

/// Decodes the hex of `field`: uppercase digits are
/// [`FieldError::not_canonical`], anything else not hex is an invalid field.
pub(crate) fn lower_hex<E: FieldError>(field: &'static str, value: &str) -> Result<Vec<u8>, E> {
    if value.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(E::not_canonical());
    }
    hex::decode(value).map_err(|e| invalid(field, format!("it is not hex ({e})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_decoding_is_lowercase_only() {
        assert_eq!(decode_lower_hex("00ff"), Some(vec![0, 255]));
        assert_eq!(decode_lower_hex("00FF"), None);
        assert_eq!(decode_hex32(&"ab".repeat(31)), None);
    }
}
