//! Code generation for `par!`: the block a site becomes.
//!
//! A `par!` site becomes a block that
//! 1. evaluates the options, the range (or slice) and borrows the captures;
//! 2. defines `__pp_par_chunk`, a plain function that runs the serial loop over one chunk
//!    and returns its partial result, and registers it as a task whose arguments are the
//!    chunk's bounds (or elements) and the captures, so another process can run chunks;
//! 3. runs the same loop, compiled a second time as a closure (the partial's type can only
//!    be inferred inside the caller's function), on every chunk through the server;
//! 4. combines the partials in chunk order.
//!
//! Locals of the expansion have mixed-site hygiene, so they never clash with the user's.

use super::fold::{accumulate, fold};
use super::input::{ParInput, ReductionKind, Source};
use super::names::Names;
use super::registration::registration;
use super::site::{site_fingerprint, site_id, travel_types};
use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::Ident;

/// The block of a site parsed into `input` whose tokens read `text` (without whitespace).
/// With `register`, the block also defines and registers the site's chunk function (see
/// [`registration`]); without, it only runs the loop locally.
pub(crate) fn generate(input: &ParInput, text: &str, register: bool) -> TokenStream {
    let n = Names::new();
    let p = quote!(::pp::__private::par);
    let Names {
        server,
        chunks,
        split,
        slice,
        lo,
        hi,
        parts,
        index,
        chunk,
        ..
    } = &n;

    let server_expr = input
        .server
        .as_ref()
        .map_or_else(|| quote!(#p::default_server()), ToTokens::to_token_stream);
    let chunks_expr = input.chunks.as_ref().map_or_else(
        || quote!(#p::default_chunks(#server)),
        ToTokens::to_token_stream,
    );

    // What the loop runs over, and the chunk's index type.
    let (source_setup, index_ty) = match &input.source {
        Source::Range {
            start,
            end,
            inclusive,
        } => {
            let ty = &input.var_ty;
            let split_call = quote_spanned!(ty.span()=>
                ::pp::__private::par::Split::<#ty>::range(#start, #end, #inclusive, #chunks)
            );
            (
                quote! {
                    let #split = #split_call;
                },
                ty.to_token_stream(),
            )
        }
        Source::Slice { expr, elem } => (
            quote! {
                let #slice: &[#elem] = #expr;
                let #split = #p::Split::<usize>::range(0, #slice.len(), false, #chunks);
            },
            quote!(usize),
        ),
    };

    let borrow_captures = input.captures.iter().map(|c| {
        let (name, ty) = (&c.name, &c.ty);
        quote_spanned!(name.span()=> let #name: &#ty = &#name;)
    });

    let fold_local = fold(input, &n, true);
    let allow = quote!(#[allow(unused_braces, clippy::unit_arg, clippy::let_unit_value, clippy::ptr_arg, clippy::too_many_arguments)]);

    // The local closure over one chunk: bounds in, partial out.
    let local_chunk = match &input.source {
        Source::Range { .. } => quote! {
            #allow
            let #chunk = |#lo: #index_ty, #hi: #index_ty| { #fold_local };
        },
        Source::Slice { elem, .. } => {
            let items = &n.items;
            quote! {
                #allow
                let #chunk = |#lo: usize, #hi: usize| {
                    let #items: &[#elem] = &#slice[#lo..=#hi];
                    #fold_local
                };
            }
        }
    };

    let id = site_id(text);
    let registration = if register {
        registration(input, &n, &fold(input, &n, false), &allow, &id)
    } else {
        TokenStream::new()
    };

    // Uses of the index type are spanned at it, so that a type that is not an integer is
    // reported once, there.
    let index_span = index_ty.span();
    let bounds = quote_spanned!(index_span=> ::pp::__private::par::Split::bounds(&#split, #index));
    let fingerprint = site_fingerprint(input, &travel_types(input));
    let site = quote!(#p::Site { id: #id, fingerprint: #fingerprint });
    // What a node needs to run chunk `index`: exactly what the registered function's entry
    // point decodes (the bounds, or the chunk's items, then the captures).
    let cap_names: Vec<&Ident> = input.captures.iter().map(|c| &c.name).collect();
    let travelling = match &input.source {
        Source::Range { .. } => quote!(#lo, #hi),
        Source::Slice { .. } => quote!(&#slice[#lo..=#hi]),
    };
    let encode = quote!(|#index: usize| {
        // A capture that is not serde-encodable is reported by the site's checks; then
        // `encode` resolves to a fallback that adds no error.
        #[allow(unused_imports)]
        use #p::NotEncodable as _;
        let (#lo, #hi) = #bounds;
        #p::Encoder(&(#travelling, (#(#cap_names,)*))).encode()
    });
    let local = quote!(|#index: usize| {
        let (#lo, #hi) = #bounds;
        #chunk(#lo, #hi)
    });
    let run = quote!(#p::run_at(#server, #site, #split.chunks(), #local, #encode));
    let part = Ident::new("part", Span::mixed_site());
    let find = |select: TokenStream| quote!(#p::find_at(#server, #site, #split.chunks(), #local, |#part| #select, #encode));
    let value = input.value_span();
    // Sums, products, minima and maxima of the partials go through the same helpers, at the
    // same spans, as in the chunk, so that a type that does not fit is reported once.
    let acc = &n.acc;
    let combined = match &input.reduction.kind {
        kind @ (ReductionKind::Sum | ReductionKind::Product) => {
            let (init, step) = accumulate(kind, value, acc, &part.to_token_stream());
            quote!({
                #init
                for #part in #run { #step }
                #acc
            })
        }
        kind @ (ReductionKind::Min | ReductionKind::Max) => {
            let (init, step) = accumulate(kind, value, acc, &part.to_token_stream());
            quote!({
                #init
                for #part in ::core::iter::IntoIterator::into_iter(#run).flatten() { #step }
                #acc
            })
        }
        ReductionKind::Count => quote!(#p::count(#run)),
        ReductionKind::Collect => quote!(#p::concat(#run)),
        ReductionKind::Any => {
            let found = find(quote!(#part.then_some(())));
            quote!(#found.is_some())
        }
        ReductionKind::All => {
            let found = find(quote!((!#part).then_some(())));
            quote!(#found.is_none())
        }
        ReductionKind::Find => find(quote!(#part)),
        ReductionKind::Reduce { identity, combine } => quote! {{
            let #parts = #run;
            #p::reduce(#parts, #identity, #combine)
        }},
    };

    quote! {{
        let #server: &#p::Server = #server_expr;
        let #chunks: usize = #chunks_expr;
        #source_setup
        #(#borrow_captures)*
        #registration
        #local_chunk
        #allow
        let #parts = #combined;
        #parts
    }}
}
