//! `#[pp::parallel]`: a function, or the methods of an inherent impl block, made into tasks.
//!
//! [`signature`] decides whether a signature can become a job (and writes its text for the
//! fingerprint); [`generate`] emits the task descriptor and its registry entry.

mod generate;
mod signature;

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::Item;

/// Expands `#[pp::parallel]` (with `args` between its parentheses) on `item`. On error, the
/// item unchanged followed by the errors, so that the rest of the crate (and the IDE) still
/// sees the item and reports nothing more about it.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let original = item.clone();
    let result = if !args.is_empty() {
        Err(syn::Error::new_spanned(
            &args,
            "`#[pp::parallel]` takes no arguments",
        ))
    } else {
        match syn::parse2::<Item>(item) {
            Ok(Item::Fn(item)) => generate::expand_fn(item),
            Ok(Item::Impl(item)) => generate::expand_impl(item),
            Ok(other) => Err(syn::Error::new_spanned(
                other.to_token_stream(),
                "`#[pp::parallel]` goes on a function or on an inherent `impl` block",
            )),
            Err(error) => Err(error),
        }
    };
    match result {
        Ok(tokens) => tokens,
        Err(error) => {
            let mut tokens = original;
            tokens.extend(error.into_compile_error());
            tokens
        }
    }
}
