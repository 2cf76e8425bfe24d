//! Code generation for `#[pp::parallel]`: the task descriptor, the hidden function, the
//! `Portable` checks and the registry entry, from a signature that passed
//! [`check_signature`].
//!
//! Everything emitted names the runtime as `::pp::__private`, so expansions work whatever the
//! user's crate calls its own items.

use super::signature::{check_signature, replace_self, signature_text, JobSignature, Receiver};
use crate::errors::Errors;
use crate::task_record::task_record;
use crate::token_text::compact;
use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{Attribute, FnArg, ImplItem, ImplItemFn, ItemFn, ItemImpl, Type};

/// `#[parallel]` on a free function: the body moves to a hidden function, the name becomes a
/// `const` task descriptor that dereferences to it, and the task is registered.
pub(crate) fn expand_fn(item: ItemFn) -> Result<TokenStream, syn::Error> {
    let sig = check_signature(&item.sig, false)?;
    let name = &item.sig.ident;
    let vis = &item.vis;
    let hidden = format_ident!("__pp_task_{}", name);
    let fn_ptr = fn_pointer_type(&sig.arg_types, &sig.output);
    let id = quote!(::core::concat!(
        ::core::module_path!(),
        "::",
        ::core::stringify!(#name)
    ));
    let fingerprint = fingerprint(&signature_text(&sig, None));

    let (doc_attrs, cfg_attrs, other_attrs) = split_attrs(&item.attrs);
    let mut body_fn = item.clone();
    body_fn.sig.ident = hidden.clone();
    body_fn.attrs = cfg_attrs
        .iter()
        .chain(&other_attrs)
        .cloned()
        .cloned()
        .collect();
    let checks = portable_checks(
        sig.arg_types
            .iter()
            .chain(std::iter::once(&sig.output))
            .map(ToTokens::to_token_stream)
            .collect::<Vec<_>>()
            .iter(),
    );
    let invoke = format_ident!("__pp_invoke_{}", name);
    let probe = invoke_probe();
    let record = task_record(&format_ident!("__PP_TASK_RECORD"), &id, &fingerprint);

    Ok(quote! {
        #(#doc_attrs)*
        #(#cfg_attrs)*
        #[allow(non_upper_case_globals)]
        #vis const #name: ::pp::__private::Task<#fn_ptr> =
            ::pp::__private::Task::new(#id, #fingerprint, #hidden as #fn_ptr);

        #[doc(hidden)]
        #[allow(non_snake_case)]
        #body_fn

        #(#cfg_attrs)*
        const _: () = {
            #checks
            #probe
            #[allow(non_snake_case)]
            fn #invoke(
                args: &[u8],
            ) -> ::core::result::Result<::std::vec::Vec<u8>, ::pp::__private::InvokeError> {
                __PpInvoke(#name).invoke(args)
            }
            #record
            #[::pp::__private::linkme::distributed_slice(::pp::__private::TASKS)]
            #[linkme(crate = ::pp::__private::linkme)]
            static __PP_TASK: ::pp::__private::TaskEntry =
                ::pp::__private::TaskEntry::with_hooks(
                    #id,
                    #fingerprint,
                    #invoke,
                    &::pp::__private::HOOKS,
                )
                .with_record(&__PP_TASK_RECORD);
        };
    })
}

/// `#[parallel]` on an inherent impl block: every method with a `&self` or `self` receiver
/// gets a task descriptor, an associated `const` named after it in upper case
/// (`t_log` → `T_LOG`) whose arguments are the object followed by the method's arguments.
pub(crate) fn expand_impl(item: ItemImpl) -> Result<TokenStream, syn::Error> {
    let mut errors = Errors::default();
    if let Some((_, path, _)) = &item.trait_ {
        let self_ty = compact(&item.self_ty.to_token_stream());
        errors.push_spanned(
            path,
            format!("`#[pp::parallel]` goes on an inherent impl block (`impl {self_ty} {{ ... }}`), not on a trait impl: put the methods to run as jobs in an inherent impl block"),
        );
    }
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        errors.push(
            item.generics.span(),
            "`#[pp::parallel]` cannot make jobs of methods of a generic impl block: a job needs one concrete type",
        );
    }
    errors.finish()?;

    let self_ty = &*item.self_ty;
    let mut errors = Errors::default();
    let mut descriptors = Vec::new();
    let mut registrations = Vec::new();
    let mut checks =
        vec![quote_spanned!(self_ty.span()=> ::pp::__private::assert_portable::<#self_ty>();)];
    for method in item.items.iter().filter_map(|i| match i {
        ImplItem::Fn(f) => Some(f),
        _ => None,
    }) {
        if !method
            .sig
            .inputs
            .iter()
            .any(|a| matches!(a, FnArg::Receiver(_)))
        {
            continue; // associated functions such as `new` stay as they are
        }
        match check_signature(&method.sig, true) {
            Ok(sig) => {
                let (descriptor, registration, check) = method_task(self_ty, method, &sig);
                descriptors.push(descriptor);
                registrations.push(registration);
                checks.push(check);
            }
            Err(error) => errors.push_error(error),
        }
    }
    errors.finish()?;
    let probe = invoke_probe();

    Ok(quote! {
        #item

        impl #self_ty {
            #(#descriptors)*
        }

        const _: () = {
            #(#checks)*
            #probe
            #(#registrations)*
        };
    })
}

/// One method's task: its descriptor (an associated `const`), its registry entry and
/// its `Portable` checks, in that order.
fn method_task(
    self_ty: &Type,
    method: &ImplItemFn,
    sig: &JobSignature,
) -> (TokenStream, TokenStream, TokenStream) {
    let name = &method.sig.ident;
    let vis = &method.vis;
    let const_name = Ident::new(&name.to_string().to_uppercase(), name.span());
    let arg_types: Vec<TokenStream> = sig
        .arg_types
        .iter()
        .map(|t| replace_self(t.to_token_stream(), self_ty))
        .collect();
    let output = replace_self(sig.output.to_token_stream(), self_ty);
    let arg_names: Vec<Ident> = (0..arg_types.len())
        .map(|i| format_ident!("arg{}", i))
        .collect();
    let fn_ptr = quote!(fn(#self_ty #(, #arg_types)*) -> #output);
    let type_text = compact(&self_ty.to_token_stream());
    let id = quote!(
        ::core::concat!(::core::module_path!(), "::", #type_text, "::", ::core::stringify!(#name))
    );
    let fingerprint = fingerprint(&signature_text(sig, Some(self_ty)));
    let receiver = match sig.receiver {
        Some(Receiver::Ref) => quote!(&this),
        _ => quote!(this),
    };
    let doc = format!(
        "Job descriptor of [`{type_text}::{name}`]: submit it with the object as the first element of the arguments tuple."
    );
    let descriptor = quote! {
        #[doc = #doc]
        #[allow(dead_code)]
        #vis const #const_name: ::pp::__private::Task<#fn_ptr> = ::pp::__private::Task::new(
            #id,
            #fingerprint,
            {
                fn call(this: #self_ty #(, #arg_names: #arg_types)*) -> #output {
                    <#self_ty>::#name(#receiver #(, #arg_names)*)
                }
                call
            } as #fn_ptr,
        );
    };
    let invoke = format_ident!("__pp_invoke_{}", name);
    let entry = format_ident!("__PP_TASK_{}", const_name);
    let record_name = format_ident!("__PP_TASK_RECORD_{}", const_name);
    let record = task_record(&record_name, &id, &fingerprint);
    let registration = quote! {
        #[allow(non_snake_case)]
        fn #invoke(
            args: &[u8],
        ) -> ::core::result::Result<::std::vec::Vec<u8>, ::pp::__private::InvokeError> {
            __PpInvoke(<#self_ty>::#const_name).invoke(args)
        }
        #record
        #[::pp::__private::linkme::distributed_slice(::pp::__private::TASKS)]
        #[linkme(crate = ::pp::__private::linkme)]
        static #entry: ::pp::__private::TaskEntry =
            ::pp::__private::TaskEntry::with_hooks(
                    #id,
                    #fingerprint,
                    #invoke,
                    &::pp::__private::HOOKS,
                )
                .with_record(&#record_name);
    };
    let arg_checks = portable_checks(arg_types.iter().chain(std::iter::once(&output)));
    (descriptor, registration, arg_checks)
}

/// `fn(A, B) -> R`: the type a task descriptor carries.
fn fn_pointer_type(args: &[Type], output: &Type) -> TokenStream {
    quote!(fn(#(#args),*) -> #output)
}

/// The fingerprint as an expression: the runtime's `fnv1a64` of the signature's text.
fn fingerprint(signature: &str) -> TokenStream {
    quote!(::pp::__private::fnv1a64(#signature.as_bytes()))
}

/// `__PpInvoke(task).invoke(args)`: runs a task from bytes, for its registry entry.
///
/// When a type of the task is not `Portable`, the `assert_portable` checks emitted next to
/// this already fail to compile with a clear message at that type. Calling `invoke_typed`
/// directly would fail as well, a second time, at the function's name and with serde's
/// generic message. So the call goes through an inherent method bounded by `F: TaskFn`;
/// when the bound does not hold, method resolution silently picks the trait method instead,
/// whose body never runs because compilation fails anyway.
fn invoke_probe() -> TokenStream {
    quote! {
        struct __PpInvoke<F>(::pp::__private::Task<F>);
        impl<F: ::pp::__private::TaskFn> __PpInvoke<F> {
            fn invoke(
                self,
                args: &[u8],
            ) -> ::core::result::Result<::std::vec::Vec<u8>, ::pp::__private::InvokeError> {
                ::pp::__private::invoke_typed(self.0, args)
            }
        }
        #[allow(dead_code)]
        trait __PpNotPortable {
            fn invoke(
                self,
                args: &[u8],
            ) -> ::core::result::Result<::std::vec::Vec<u8>, ::pp::__private::InvokeError>;
        }
        impl<F> __PpNotPortable for __PpInvoke<F> {
            fn invoke(
                self,
                _: &[u8],
            ) -> ::core::result::Result<::std::vec::Vec<u8>, ::pp::__private::InvokeError> {
                ::core::unreachable!("a task whose types are not `Portable` does not compile")
            }
        }
    }
}

/// One `assert_portable` per type, spanned at the type so the error points there.
fn portable_checks<'a>(types: impl Iterator<Item = &'a TokenStream>) -> TokenStream {
    let mut checks = TokenStream::new();
    for ty in types {
        checks.extend(quote_spanned!(ty.span()=> ::pp::__private::assert_portable::<#ty>();));
    }
    checks
}

/// Doc attributes go to the descriptor, `cfg` to everything, the rest to the function.
fn split_attrs(attrs: &[Attribute]) -> (Vec<&Attribute>, Vec<&Attribute>, Vec<&Attribute>) {
    let mut doc = Vec::new();
    let mut cfg = Vec::new();
    let mut other = Vec::new();
    for attr in attrs {
        if attr.path().is_ident("doc") {
            doc.push(attr);
        } else if attr.path().is_ident("cfg") {
            cfg.push(attr);
        } else {
            other.push(attr);
        }
    }
    (doc, cfg, other)
}
