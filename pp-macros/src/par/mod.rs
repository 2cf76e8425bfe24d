//! `par!`: a serial `for` loop with a reduction, run as chunked jobs.
//!
//! The path of one site: [`input`] parses the tokens into a `ParInput`, [`body_check`]
//! checks the loop body, and [`generate`](mod@generate) writes the block that runs it, with the help of
//! [`fold`] (the serial loop over one chunk), [`registration`] (the chunk as a registered
//! task), [`site`] (the site's id and fingerprint), [`nested`] (a `par!` inside another)
//! and [`names`] (the expansion's hygienic locals).

mod body_check;
mod fold;
mod generate;
mod input;
mod names;
mod nested;
mod registration;
mod site;

use crate::token_text::compact;
use body_check::check_body;
use generate::generate;
use input::ParInput;
use proc_macro2::{Delimiter, Group, TokenStream, TokenTree};
use quote::quote;

/// Expands `par!(tokens)`; on error, the errors as an expression that fits anywhere, so that
/// the surrounding code reports nothing more.
pub(crate) fn expand(tokens: TokenStream) -> TokenStream {
    // The site's text without the local-copy marker: the id must be the same in both
    // copies of an outer body, since the registered copy alone registers the site.
    let text = nested::unmarked(compact(&tokens));
    let input = match syn::parse2::<ParInput>(tokens) {
        Ok(input) => input,
        Err(error) => return failed(error),
    };
    match check_body(&input) {
        Ok(()) => generate(&input, &text, input.register),
        // A body that only misses captures still compiles as a closure: emit that (but no
        // registered function, whose errors would repeat ours), so no other error or
        // warning (such as an unused variable) follows.
        Err(error) if only_uncaptured(&error) => {
            let mut tokens = error.into_compile_error();
            tokens.extend(generate(&input, &text, false));
            quote!({ #tokens })
        }
        Err(error) => failed(error),
    }
}

/// Whether every error is a variable missing from `with (...)`, the one mistake after
/// which the loop still compiles as a closure.
fn only_uncaptured(error: &syn::Error) -> bool {
    error
        .clone()
        .into_iter()
        .all(|e| e.to_string().contains("not named in `with (...)`"))
}

/// The errors, the last one as the block's value: an expression of rustc's error type, which
/// fits any context without further errors or warnings (`unreachable!()` would make the code
/// after it "unreachable").
fn failed(error: syn::Error) -> TokenStream {
    let mut errors: Vec<TokenStream> = error.into_iter().map(|e| e.into_compile_error()).collect();
    let last = errors.pop().map(|tokens| {
        tokens
            .into_iter()
            .map(|tree| match tree {
                TokenTree::Group(group) if group.delimiter() == Delimiter::Brace => {
                    let mut parens = Group::new(Delimiter::Parenthesis, group.stream());
                    parens.set_span(group.span());
                    TokenTree::Group(parens)
                }
                other => other,
            })
            .collect::<TokenStream>()
    });
    quote!({ #(#errors)* #last })
}
