//! The DER shape of a new trust anchor: a SubjectPublicKeyInfo or a
//! certificate, checked as far as its outer structure so that a typo'd file
//! is caught before custodians are asked to approve it.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AnchorKind {
    PublicKey,
    Certificate,
}

/// One DER TLV with a low tag number and a minimal definite length:
/// (tag, contents, rest).
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let (bytes, rest) = rest.split_at_checked(n)?;
        if bytes[0] == 0 {
            return None;
        }
        let len = bytes
            .iter()
            .fold(0usize, |acc, &b| acc << 8 | usize::from(b));
        if len < 0x80 {
            return None;
        }
        (len, rest)
    };
    let (contents, rest) = rest.split_at_checked(len)?;
    Some((tag, contents, rest))
}

/// Whether `der` has the outer shape of a SubjectPublicKeyInfo (RFC 5280
/// §4.1: SEQUENCE { AlgorithmIdentifier, BIT STRING }) or of a Certificate
/// (SEQUENCE { TBSCertificate, AlgorithmIdentifier, BIT STRING }).
pub(super) fn anchor_kind(der: &[u8]) -> Result<AnchorKind, &'static str> {
    const NOT_DER: &str =
        "it is not the DER of a SubjectPublicKeyInfo or an X.509 certificate (RFC 5280 §4.1)";
    let (tag, mut contents, rest) = der_tlv(der).ok_or(NOT_DER)?;
    if tag != 0x30 || !rest.is_empty() {
        return Err(NOT_DER);
    }
    let mut tags = Vec::with_capacity(3);
    let mut first_child = None;
    while !contents.is_empty() {
        let (tag, inner, rest) = der_tlv(contents).ok_or(NOT_DER)?;
        if first_child.is_none() {
            first_child = Some(inner);
        }
        tags.push(tag);
        if tags.len() > 3 {
            return Err(NOT_DER);
        }
        contents = rest;
    }
    match tags.as_slice() {
        [0x30, 0x03] => {
            // AlgorithmIdentifier starts with its OID.
            let alg = first_child.unwrap_or_default();
            match der_tlv(alg) {
                Some((0x06, _, _)) => Ok(AnchorKind::PublicKey),
                _ => Err(NOT_DER),
            }
        }
        [0x30, 0x30, 0x03] => Ok(AnchorKind::Certificate),
        _ => Err(NOT_DER),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_reader_refuses_non_minimal_and_indefinite_lengths() {
        assert!(der_tlv(&[0x30, 0x80, 0x00, 0x00]).is_none());
        assert!(der_tlv(&[0x30, 0x81, 0x05, 0, 0, 0, 0, 0]).is_none());
        assert!(der_tlv(&[0x30, 0x82, 0x00, 0x80]).is_none());
        assert!(der_tlv(&[0x30, 0x03, 0x01]).is_none());
        assert_eq!(
            der_tlv(&[0x02, 0x01, 0x05, 0xff]),
            Some((0x02, &[5][..], &[0xff][..]))
        );
    }
}
