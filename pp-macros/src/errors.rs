//! [`Errors`]: the spanned errors of one expansion, gathered so that the user sees every
//! mistake of an item or a `par!` site at once rather than one per compile.

use proc_macro2::Span;
use quote::ToTokens;

/// The errors found so far in one item or `par!` site; empty when all is well.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    /// Adds an error at `span`.
    pub(crate) fn push(&mut self, span: Span, message: impl std::fmt::Display) {
        self.push_error(syn::Error::new(span, message));
    }

    /// As [`push`](Errors::push), underlining all of `tokens` rather than their first token.
    pub(crate) fn push_spanned(&mut self, tokens: impl ToTokens, message: impl std::fmt::Display) {
        self.push_error(syn::Error::new_spanned(tokens, message));
    }

    /// Adds an error (or several, combined) that a parser already built.
    pub(crate) fn push_error(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// `Ok` when nothing was pushed, else every pushed error as one.
    pub(crate) fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }

    /// The pushed errors as one; called after at least one was pushed (an internal error
    /// otherwise, so that a bug in the macro never goes unreported).
    pub(crate) fn into_error(self) -> syn::Error {
        self.0.unwrap_or_else(|| {
            syn::Error::new(
                Span::call_site(),
                "internal error in `par!`: please report it",
            )
        })
    }
}
