//! Procedural macros of [pp](https://docs.rs/pp). Use them through the facade:
//! `#[pp::parallel]`. Generated code refers only to `::pp::__private`.

mod expand;
mod parse;

use proc_macro::TokenStream;
use quote::ToTokens;
use syn::Item;

/// Turns a function (or the methods of an inherent impl block) into a job that a
/// `pp::Server` can run, locally or on another machine, while it stays callable as before.
///
/// On `fn sum_primes(n: u64) -> u64`, the name `sum_primes` becomes a
/// `pp::Task<fn(u64) -> u64>` constant: `sum_primes(100)` still calls the function, and
/// `server.submit(sum_primes, (100,))` runs it as a job. The task is registered under the id
/// `module::path::sum_primes` with a fingerprint of its signature.
///
/// On `impl Type { ... }`, every method taking `&self` or `self` gets an associated
/// constant named in upper case (`t_log` → `Type::T_LOG`), a task whose first argument is
/// the object: `server.submit(Type::T_LOG, (object, x))`. Associated functions without a
/// receiver are left alone.
///
/// Arguments and results must be owned serde types. Generic, `async`, `unsafe` and
/// `extern` functions, `&mut self` methods, `impl Trait` and reference arguments are
/// rejected with a compile error at the offending span.
#[proc_macro_attribute]
pub fn parallel(args: TokenStream, input: TokenStream) -> TokenStream {
    let args = proc_macro2::TokenStream::from(args);
    let original = proc_macro2::TokenStream::from(input.clone());
    let result = if !args.is_empty() {
        Err(syn::Error::new_spanned(
            &args,
            "`#[pp::parallel]` takes no arguments",
        ))
    } else {
        match syn::parse::<Item>(input) {
            Ok(Item::Fn(item)) => expand::expand_fn(item),
            Ok(Item::Impl(item)) => expand::expand_impl(item),
            Ok(other) => Err(syn::Error::new_spanned(
                other.to_token_stream(),
                "`#[pp::parallel]` goes on a function or on an inherent `impl` block",
            )),
            Err(error) => Err(error),
        }
    };
    match result {
        Ok(tokens) => tokens.into(),
        // Keep the user's item so the rest of the crate (and the IDE) still sees it.
        Err(error) => {
            let mut tokens = original;
            tokens.extend(error.into_compile_error());
            tokens.into()
        }
    }
}
