//! The serial loop over one chunk, folded into the chunk's partial result: the body of both
//! the registered chunk function and the local closure, and the accumulators of `sum`,
//! `product`, `min` and `max` that also combine the partials.

use super::input::{ParInput, ReductionKind, Source};
use super::names::Names;
use super::nested::mark_nested;
use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::Ident;

/// The serial loop over one chunk (`lo..=hi`, or the slice `items`) folded into its
/// partial result; used both as the registered function's body and as the local closure's.
pub(crate) fn fold(input: &ParInput, n: &Names, local: bool) -> TokenStream {
    let p = quote!(::pp::__private::par);
    let Names {
        lo,
        hi,
        k,
        x,
        items,
        acc,
        item,
        combine,
        ..
    } = n;
    let value = input.value_span();
    let body = if local {
        mark_nested(input.body.to_token_stream())
    } else {
        input.body.to_token_stream()
    };
    let (init, step, result) = match &input.reduction.kind {
        kind @ (ReductionKind::Sum
        | ReductionKind::Product
        | ReductionKind::Min
        | ReductionKind::Max) => {
            let (init, step) = accumulate(kind, value, acc, &body);
            (init, step, quote!(#acc))
        }
        ReductionKind::Count => (
            quote!(let mut #acc: usize = 0;),
            quote! {
                let #item: bool = #body;
                if #item { #acc += 1; }
            },
            quote!(#acc),
        ),
        ReductionKind::Any => (
            TokenStream::new(),
            quote! {
                let #item: bool = #body;
                if #item { return true; }
            },
            quote!(false),
        ),
        ReductionKind::All => (
            TokenStream::new(),
            quote! {
                let #item: bool = #body;
                if !#item { return false; }
            },
            quote!(true),
        ),
        ReductionKind::Find => (
            TokenStream::new(),
            quote! {
                let #item: ::core::option::Option<_> = #body;
                if #item.is_some() { return #item; }
            },
            quote!(::core::option::Option::None),
        ),
        ReductionKind::Collect => {
            let hint = match &input.source {
                Source::Range { .. } => quote_spanned!(input.var_ty.span()=>
                    ::pp::__private::par::len_hint(#lo, #hi)
                ),
                Source::Slice { .. } => quote!(#items.len()),
            };
            (
                quote!(let mut #acc = ::std::vec::Vec::with_capacity(#hint);),
                quote!(#acc.push(#body);),
                quote!(#acc),
            )
        }
        ReductionKind::Reduce {
            identity,
            combine: f,
        } => (
            quote! {
                let mut #acc = #identity;
                let mut #combine = #p::combiner(&#acc, #f);
            },
            quote!(#acc = #combine(#acc, #body);),
            quote!(#acc),
        ),
    };
    let var = &input.var;
    let looped = match &input.source {
        Source::Range { .. } => {
            let ty = &input.var_ty;
            let step_fn = quote_spanned!(ty.span()=> ::pp::__private::par::ParIndex::step);
            quote! {
                if #lo <= #hi {
                    let mut #k: #ty = #lo;
                    loop {
                        {
                            let #var: #ty = #k;
                            #step
                        }
                        if #k == #hi {
                            break;
                        }
                        #k = #step_fn(#k);
                    }
                }
            }
        }
        Source::Slice { elem, .. } => quote! {
            for #x in #items {
                let #var: &#elem = #x;
                #step
            }
        },
    };
    quote! {
        #init
        #looped
        #result
    }
}

/// The accumulator and the step of `sum`, `product`, `min` and `max` over `item`, spanned at
/// the body's value so that a type without the needed trait is reported there.
pub(crate) fn accumulate(
    kind: &ReductionKind,
    value: Span,
    acc: &Ident,
    item: &TokenStream,
) -> (TokenStream, TokenStream) {
    match kind {
        ReductionKind::Sum => (
            quote_spanned!(value=> let mut #acc = ::pp::__private::par::sum_identity();),
            quote_spanned!(value=> #acc = ::pp::__private::par::add(#acc, #item);),
        ),
        ReductionKind::Product => (
            quote_spanned!(value=> let mut #acc = ::pp::__private::par::product_identity();),
            quote_spanned!(value=> #acc = ::pp::__private::par::mul(#acc, #item);),
        ),
        ReductionKind::Min => (
            quote!(let mut #acc = ::core::option::Option::None;),
            quote_spanned!(value=> ::pp::__private::par::min_step(&mut #acc, #item);),
        ),
        _ => (
            quote!(let mut #acc = ::core::option::Option::None;),
            quote_spanned!(value=> ::pp::__private::par::max_step(&mut #acc, #item);),
        ),
    }
}
