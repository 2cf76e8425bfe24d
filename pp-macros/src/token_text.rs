//! Token text as it goes into task ids and fingerprints.

use proc_macro2::TokenStream;

/// Token text with whitespace removed, so that reformatting the source never changes a
/// task's id or fingerprint.
pub(crate) fn compact(tokens: &TokenStream) -> String {
    tokens
        .to_string()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect()
}
