//! The checks on a `#[pp::parallel]` function's signature (can it become a job?), every
//! misuse a spanned error, and the signature's text for the task's fingerprint.

use crate::errors::Errors;
use crate::token_text::compact;
use proc_macro2::{Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::{FnArg, Pat, ReturnType, Signature, Type};

/// Most arguments a job function may take (the runtime implements `TaskFn` up to here).
pub(crate) const MAX_ARGS: usize = 12;

/// The receiver of a method that becomes a job.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Receiver {
    /// `&self`: the job gets the object by value and lends it to the method.
    Ref,
    /// `self`: the job gets the object by value and gives it to the method.
    Value,
}

/// A signature that passed every check.
pub(crate) struct JobSignature {
    /// The receiver of a method; `None` for a free function.
    pub(crate) receiver: Option<Receiver>,
    /// The argument types (the receiver aside), as written.
    pub(crate) arg_types: Vec<Type>,
    /// The result type, `()` when none is written.
    pub(crate) output: Type,
}

/// Checks a function or method signature. `in_impl` allows a `self` receiver.
pub(crate) fn check_signature(sig: &Signature, in_impl: bool) -> Result<JobSignature, syn::Error> {
    let mut errors = Errors::default();
    let name = &sig.ident;
    if let Some(token) = &sig.asyncness {
        errors.push(
            token.span(),
            format!("`#[pp::parallel]` cannot make a job of `async fn {name}`: a job is a plain function that runs to completion on a worker; remove `async`"),
        );
    }
    if let Some(token) = &sig.unsafety {
        errors.push(
            token.span(),
            format!("`#[pp::parallel]` cannot make a job of `unsafe fn {name}`: a job is called by the server with whatever arguments are submitted, so it must be safe to call; remove `unsafe` and check the preconditions inside, or call `{name}` from a safe job function"),
        );
    }
    if let Some(abi) = &sig.abi {
        errors.push_spanned(
            abi,
            "`#[pp::parallel]` needs a Rust function: remove the `extern` ABI",
        );
    }
    if let Some(dots) = &sig.variadic {
        errors.push(
            dots.span(),
            "`#[pp::parallel]` cannot make a job of a variadic function",
        );
    }
    if !sig.generics.params.is_empty() {
        errors.push_spanned(
            &sig.generics,
            format!("`#[pp::parallel]` cannot make a job of generic function `{name}`: a job needs one concrete signature to be called by id on another machine; write a non-generic wrapper for each type you need"),
        );
    }
    if let Some(clause) = &sig.generics.where_clause {
        errors.push_spanned(
            clause,
            "`#[pp::parallel]` does not accept a `where` clause: a job needs one concrete signature",
        );
    }

    let mut receiver = None;
    let mut arg_types = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(r) if !in_impl => errors.push_spanned(
                r,
                "`self` outside an impl block: put `#[pp::parallel]` on the `impl` block instead",
            ),
            FnArg::Receiver(r) => {
                if r.mutability.is_some() && r.reference.is_some() {
                    errors.push_spanned(
                        r,
                        format!("`#[pp::parallel]` cannot make a job of `{name}(&mut self)`: a job runs on a copy of the object, so changes would be lost; take `&self` and return the new value, or move `{name}` to another impl block"),
                    );
                } else if r.colon_token.is_some() {
                    errors.push_spanned(
                        &r.ty,
                        format!("`#[pp::parallel]` supports `&self` and `self` receivers only, not `self: {}`", r.ty.to_token_stream()),
                    );
                } else if let Some((_, Some(lifetime))) = &r.reference {
                    errors.push(lifetime.span(), "a job's `&self` cannot name a lifetime");
                } else {
                    receiver = Some(if r.reference.is_some() {
                        Receiver::Ref
                    } else {
                        Receiver::Value
                    });
                }
            }
            FnArg::Typed(arg) => {
                if let Pat::Ident(ident) = arg.pat.as_ref() {
                    if ident.by_ref.is_some() {
                        errors.push_spanned(ident, "a job argument cannot be bound by `ref`");
                    }
                }
                check_owned_type(&arg.ty, "argument", &mut errors);
                arg_types.push((*arg.ty).clone());
            }
        }
    }
    if arg_types.len() > MAX_ARGS {
        let extra = sig.inputs.iter().rev().nth(arg_types.len() - MAX_ARGS - 1);
        errors.push_spanned(
            extra.map_or_else(|| sig.inputs.to_token_stream(), ToTokens::to_token_stream),
            format!("a job takes at most {MAX_ARGS} arguments, `{name}` takes {}: group some of them in a struct or tuple", arg_types.len()),
        );
    }
    let output = match &sig.output {
        ReturnType::Default => syn::parse_quote!(()),
        ReturnType::Type(_, ty) => {
            check_owned_type(ty, "result", &mut errors);
            (**ty).clone()
        }
    };
    errors.finish()?;
    Ok(JobSignature {
        receiver,
        arg_types,
        output,
    })
}

/// Rejects `impl Trait` and borrowed types, which cannot cross a job boundary.
fn check_owned_type(ty: &Type, what: &str, errors: &mut Errors) {
    let impl_trait =
        "cannot be `impl Trait`: the job must have one concrete, serde-encodable type here";
    if let Type::ImplTrait(_) = ty {
        errors.push_spanned(ty, format!("a job {what} {impl_trait}"));
    } else if let Some(span) = find_ident(ty.to_token_stream(), "impl") {
        errors.push(span, format!("a job {what} {impl_trait}"));
    } else if let Type::Reference(reference) = ty {
        errors.push_spanned(
            reference,
            format!("a job {what} cannot be a reference: jobs may run on another thread or machine, so they take owned values (`String` for `&str`, `Vec<T>` for `&[T]`)"),
        );
    }
}

/// The span of the first `wanted` among `tokens`, at any depth: an `impl` nested in a
/// type (`Vec<impl Trait>`).
fn find_ident(tokens: TokenStream, wanted: &str) -> Option<Span> {
    tokens.into_iter().find_map(|tree| match tree {
        TokenTree::Ident(ident) if ident == wanted => Some(ident.span()),
        TokenTree::Group(group) => find_ident(group.stream(), wanted),
        _ => None,
    })
}

/// The signature as text without spaces, hashed into the task's fingerprint.
pub(crate) fn signature_text(sig: &JobSignature, self_ty: Option<&Type>) -> String {
    let mut text = String::new();
    if let Some(ty) = self_ty {
        text.push_str(&compact(&ty.to_token_stream()));
        text.push_str(match sig.receiver {
            Some(Receiver::Ref) => "::&self",
            Some(Receiver::Value) => "::self",
            None => "::",
        });
    }
    text.push_str("fn(");
    let args: Vec<String> = sig
        .arg_types
        .iter()
        .map(|t| compact(&t.to_token_stream()))
        .collect();
    text.push_str(&args.join(","));
    text.push_str(")->");
    text.push_str(&compact(&sig.output.to_token_stream()));
    text
}

/// Replaces every `Self` in `tokens` by `self_ty`, for code emitted outside the impl block.
pub(crate) fn replace_self(tokens: TokenStream, self_ty: &Type) -> TokenStream {
    tokens
        .into_iter()
        .map(|tree| -> TokenStream {
            match tree {
                TokenTree::Ident(ident) if ident == "Self" => self_ty.to_token_stream(),
                TokenTree::Group(group) => {
                    let mut new = proc_macro2::Group::new(
                        group.delimiter(),
                        replace_self(group.stream(), self_ty),
                    );
                    new.set_span(group.span());
                    TokenTree::Group(new).into()
                }
                other => other.into(),
            }
        })
        .collect()
}
