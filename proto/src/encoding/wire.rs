//! The tiny length-prefixed binary codec of the secret payloads (share
//! envelope and identity file), built in zeroizing buffers so a payload
//! never leaves an unwiped copy behind.

use zeroize::Zeroizing;

/// Appends fields to a zeroizing buffer allocated once.
pub(crate) struct Writer(Zeroizing<Vec<u8>>);

impl Writer {
    /// A writer whose buffer never reallocates below `capacity` bytes.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Writer(Zeroizing::new(Vec::with_capacity(capacity)))
    }

    pub(crate) fn bytes(&mut self, bytes: &[u8]) {
        debug_assert!(
            self.0.len() + bytes.len() <= self.0.capacity(),
            "payload would reallocate and leave an unwiped copy"
        );
        self.0.extend_from_slice(bytes);
    }

    pub(crate) fn u8(&mut self, value: u8) {
        self.bytes(&[value]);
    }

    /// u16 big-endian length, then the bytes. Callers bound lengths first.
    pub(crate) fn str16(&mut self, text: &str) {
        let len = u16::try_from(text.len()).expect("caller bounds field lengths");
        self.bytes(&len.to_be_bytes());
        self.bytes(text.as_bytes());
    }

    pub(crate) fn finish(self) -> Zeroizing<Vec<u8>> {
        self.0
    }
}

/// Reads fields from an untrusted payload; every read is bounds-checked.
pub(crate) struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader(bytes)
    }

    pub(crate) fn slice(&mut self, len: usize) -> Option<&'a [u8]> {
        if self.0.len() < len {
            return None;
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.slice(N).map(|s| s.try_into().expect("length checked"))
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.slice(1).map(|s| s[0])
    }

    pub(crate) fn str16(&mut self) -> Option<&'a str> {
        let len = u16::from_be_bytes(self.array::<2>()?);
        std::str::from_utf8(self.slice(usize::from(len))?).ok()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
