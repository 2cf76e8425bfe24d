//! Code generation for `par!`.
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

use crate::par_parse::{check_body, ParInput, ReductionKind, Source, LOCAL_COPY};
use proc_macro2::{Delimiter, Group, Punct, Spacing, Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{Block, Ident, Stmt, Type};

/// Expands `par!(tokens)`; on error, the errors as an expression that fits anywhere, so that
/// the surrounding code reports nothing more.
pub(crate) fn expand(tokens: TokenStream) -> TokenStream {
    let text = compact(&tokens);
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

/// Token text without whitespace, hashed into the site's id.
fn compact(tokens: &TokenStream) -> String {
    tokens
        .to_string()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect()
}

/// 64-bit FNV-1a, as `pp::__private::fnv1a64`.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Hygienic names of the expansion's locals.
struct Names {
    server: Ident,
    chunks: Ident,
    split: Ident,
    slice: Ident,
    lo: Ident,
    hi: Ident,
    k: Ident,
    x: Ident,
    items: Ident,
    acc: Ident,
    item: Ident,
    combine: Ident,
    chunk: Ident,
    parts: Ident,
    index: Ident,
    args: Ident,
}

impl Names {
    fn new() -> Self {
        let name = |n: &str| Ident::new(n, Span::mixed_site());
        Names {
            server: name("server"),
            chunks: name("chunks"),
            split: name("split"),
            slice: name("slice"),
            lo: name("lo"),
            hi: name("hi"),
            k: name("k"),
            x: name("x"),
            items: name("items"),
            acc: name("acc"),
            item: name("item"),
            combine: name("combine"),
            chunk: name("chunk"),
            parts: name("parts"),
            index: name("index"),
            args: name("args"),
        }
    }
}

/// The span errors about the body's value point at: its last expression.
fn value_span(body: &Block) -> Span {
    match body.stmts.last() {
        Some(Stmt::Expr(expr, None)) => expr.span(),
        _ => body.span(),
    }
}

fn generate(input: &ParInput, text: &str, register: bool) -> TokenStream {
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

    let id_hash = format!("{:016x}", fnv1a64(text.as_bytes()));
    let id = quote! {
        ::core::concat!(::core::module_path!(), "::par@", ::core::line!(), ":", ::core::column!(), "#", #id_hash)
    };
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
    let value = value_span(&input.body);
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

/// The registered function over one chunk, and its registry entry.
fn registration(
    input: &ParInput,
    n: &Names,
    fold: &TokenStream,
    allow: &TokenStream,
    id: &TokenStream,
) -> TokenStream {
    let p = quote!(::pp::__private::par);
    let Names {
        lo,
        hi,
        items,
        args,
        ..
    } = n;
    let cap_names: Vec<&Ident> = input.captures.iter().map(|c| &c.name).collect();
    let cap_types: Vec<&Type> = input.captures.iter().map(|c| &c.ty).collect();
    let portable = quote_spanned!(value_span(&input.body)=> impl ::pp::__private::Portable);
    let (params, arg_types, arg_names, call_args) = match &input.source {
        Source::Range { .. } => {
            let ty = &input.var_ty;
            (
                quote!(#lo: #ty, #hi: #ty),
                quote!(#ty, #ty),
                quote!(#lo, #hi),
                quote!(#lo, #hi),
            )
        }
        Source::Slice { elem, .. } => (
            quote!(#items: &[#elem]),
            quote!(::std::vec::Vec<#elem>),
            quote!(#items),
            quote!(&#items),
        ),
    };
    let elem_check = match &input.source {
        Source::Slice { elem, .. } => {
            quote_spanned!(elem.span()=> ::pp::__private::assert_portable::<#elem>();)
        }
        Source::Range { .. } => TokenStream::new(),
    };
    let cap_checks = input.captures.iter().map(|c| {
        let ty = &c.ty;
        quote_spanned!(ty.span()=> ::pp::__private::assert_portable::<#ty>();)
    });
    let fingerprint = site_fingerprint(input, &arg_types);
    quote! {
        #allow
        fn __pp_par_chunk(#params #(, #cap_names: &#cap_types)*) -> #portable {
            #fold
        }
        const _: () = {
            #elem_check
            #(#cap_checks)*
            fn __pp_par_invoke(
                #args: &[u8],
            ) -> ::core::result::Result<::std::vec::Vec<u8>, ::pp::__private::InvokeError> {
                // A capture or element type that is not `Portable` is reported by the
                // checks above; then `decode` resolves to a fallback that adds no error.
                #[allow(unused_imports)]
                use #p::NotPortable as _;
                let (#arg_names, (#(#cap_names,)*)) =
                    #p::Decoder::<(#arg_types, (#(#cap_types,)*))>::new().decode(#args)?;
                #p::encode_result(&__pp_par_chunk(#call_args #(, &#cap_names)*))
            }
            #[::pp::__private::linkme::distributed_slice(::pp::__private::TASKS)]
            #[linkme(crate = ::pp::__private::linkme)]
            static __PP_PAR_TASK: ::pp::__private::TaskEntry =
                ::pp::__private::TaskEntry::with_hooks(
                    #id,
                    #fingerprint,
                    __pp_par_invoke,
                    &::pp::__private::HOOKS,
                );
        };
    }
}

/// The fingerprint of a site's registered function: its reduction, argument and capture
/// types. `arg_types` are the types the chunk's bounds or items travel as.
fn site_fingerprint(input: &ParInput, arg_types: &TokenStream) -> u64 {
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
fn travel_types(input: &ParInput) -> TokenStream {
    match &input.source {
        Source::Range { .. } => {
            let ty = &input.var_ty;
            quote!(#ty, #ty)
        }
        Source::Slice { elem, .. } => quote!(::std::vec::Vec<#elem>),
    }
}

/// The serial loop over one chunk (`lo..=hi`, or the slice `items`) folded into its
/// partial result; used both as the registered function's body and as the local closure's.
fn fold(input: &ParInput, n: &Names, local: bool) -> TokenStream {
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
    let value = value_span(&input.body);
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

/// Marks every `par!(...)` in `tokens` as a local copy (see [`LOCAL_COPY`]), so that a
/// nested site is registered once, from the outer site's registered function, and not a
/// second time from the outer site's local closure.
fn mark_nested(tokens: TokenStream) -> TokenStream {
    let trees: Vec<TokenTree> = tokens.into_iter().collect();
    let mut out = Vec::with_capacity(trees.len());
    for (i, tree) in trees.iter().enumerate() {
        match tree {
            TokenTree::Group(group) => {
                let is_par = i >= 2
                    && matches!(&trees[i - 1], TokenTree::Punct(p) if p.as_char() == '!')
                    && matches!(&trees[i - 2], TokenTree::Ident(name) if name == "par");
                let stream = if is_par {
                    let span = group.span();
                    let mut marked: Vec<TokenTree> = vec![
                        Punct::new('@', Spacing::Alone).into(),
                        Ident::new(LOCAL_COPY, span).into(),
                        Punct::new(';', Spacing::Alone).into(),
                    ];
                    marked.extend(group.stream());
                    marked.into_iter().collect()
                } else {
                    mark_nested(group.stream())
                };
                let mut new = Group::new(group.delimiter(), stream);
                new.set_span(group.span());
                out.push(TokenTree::Group(new));
            }
            other => out.push(other.clone()),
        }
    }
    out.into_iter().collect()
}

/// The accumulator and the step of `sum`, `product`, `min` and `max` over `item`, spanned at
/// the body's value so that a type without the needed trait is reported there.
fn accumulate(
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
