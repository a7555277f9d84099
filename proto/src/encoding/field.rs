//! The one way a record's error enum says "this field is invalid, because …":
//! every record error implements [`FieldError`], and the shared checks
//! (hex, text, time) build their refusals through it.

/// An error enum with a variant naming an invalid field, and one for a
/// spelling that is valid but not the canonical one.
pub(crate) trait FieldError: Sized {
    /// `field` is invalid for `reason` (a sentence fragment: "it is empty").
    fn invalid_field(field: &'static str, reason: String) -> Self;
    /// The input decodes but is not the one canonical spelling.
    fn not_canonical() -> Self;
}

/// `field` is invalid because of `reason`.
pub(crate) fn invalid<E: FieldError>(field: &'static str, reason: impl Into<String>) -> E {
    E::invalid_field(field, reason.into())
}
