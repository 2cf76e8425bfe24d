//! The chunk function of a `par!` site as a registered task: `__pp_par_chunk` over one
//! chunk's bounds (or items) and the captures, its entry point that decodes them from bytes,
//! the `Portable` checks, and its entry in the task registry. This is what lets a process
//! built from the same source run any chunk of the site.

use super::input::{ParInput, Source};
use super::names::Names;
use super::site::site_fingerprint;
use crate::task_record::task_record;
use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Ident, Type};

/// The registered function over one chunk, and its registry entry.
pub(crate) fn registration(
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
    let portable = quote_spanned!(input.value_span()=> impl ::pp::__private::Portable);
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
    let record = task_record(
        &format_ident!("__PP_PAR_TASK_RECORD"),
        id,
        &quote!(#fingerprint),
    );
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
            #record
            #[::pp::__private::linkme::distributed_slice(::pp::__private::TASKS)]
            #[linkme(crate = ::pp::__private::linkme)]
            static __PP_PAR_TASK: ::pp::__private::TaskEntry =
                ::pp::__private::TaskEntry::with_hooks(
                    #id,
                    #fingerprint,
                    __pp_par_invoke,
                    &::pp::__private::HOOKS,
                )
                .with_record(&__PP_PAR_TASK_RECORD);
        };
    }
}
