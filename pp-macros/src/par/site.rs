//! A `par!` site's identity: the id it is registered under and the fingerprint of its
//! chunk function, which a node compares with the client's before running a chunk.

use super::input::{ParInput, Source};
use crate::token_text::compact;
use proc_macro2::TokenStream;
use quote::{quote, ToTokens};

/// The site's task id, as an expression: `module::path::par@line:column#tokenhash`, the
/// hash of the site's tokens (`text`, without whitespace) setting apart sites that
/// `line!()` and `column!()` alone do not, such as those one `macro_rules!` call writes.
pub(crate) fn site_id(text: &str) -> TokenStream {
    let id_hash = format!("{:016x}", fnv1a64(text.as_bytes()));
    quote! {
        ::core::concat!(::core::module_path!(), "::par@", ::core::line!(), ":", ::core::column!(), "#", #id_hash)
    }
}

/// The fingerprint of a site's registered function: its reduction, argument and capture
/// types. `arg_types` are the types the chunk's bounds or items travel as.
pub(crate) fn site_fingerprint(input: &ParInput, arg_types: &TokenStream) -> u64 {
    let signature = format!(
        "par:{}:{}:({})",
        input.reduction.keyword,
        compact(arg_types),
        input
            .captures
            .iter()
            .map(|c| compact(&c.ty.to_token_stream()))
            .collect::<Vec<_>>()
            .join(",")
    );
    fnv1a64(signature.as_bytes())
}

/// The types a chunk's bounds (`lo, hi`) or items travel as to a node.
pub(crate) fn travel_types(input: &ParInput) -> TokenStream {
    match &input.source {
        Source::Range { .. } => {
            let ty = &input.var_ty;
            quote!(#ty, #ty)
        }
        Source::Slice { elem, .. } => quote!(::std::vec::Vec<#elem>),
    }
}

/// 64-bit FNV-1a, as `pp::__private::fnv1a64`.
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
