//! Procedural macros of [pp](https://docs.rs/pp). Use them through the facade:
//! `#[pp::parallel]` and `pp::par!`. Generated code refers only to `::pp::__private`, so
//! it works whatever the user's crate names its own items, and the runtime can change
//! behind that one path.
//!
//! # Design
//!
//! What lives where:
//! - `lib.rs`: the two entry points and their user documentation; nothing else.
//! - `errors`: the spanned errors of one expansion, gathered so that all of them show.
//! - `token_text`: token text without whitespace, for ids and fingerprints.
//! - `task_record`: a task's id and fingerprint as bytes in the executable's task section.
//! - `parallel/`: `#[pp::parallel]`.
//!   - `mod.rs`: the item dispatch (function or impl block), the user's item kept on error.
//!   - `signature.rs`: can this signature become a job? Its text for the fingerprint.
//!   - `generate.rs`: the task descriptor, the hidden function, the registry entry.
//! - `par/`: `par!`.
//!   - `mod.rs`: the entry, and the errors as an expression that fits anywhere.
//!   - `input.rs`: parsing of the options, captures, reduction and `for` loop.
//!   - `body_check.rs`: nothing may leave the body; it uses only what it named.
//!   - `generate.rs`: the block a site becomes (setup, local closure, combining).
//!   - `fold.rs`: the serial loop over one chunk, folded into its partial result.
//!   - `registration.rs`: the chunk function as a registered task.
//!   - `site.rs`: the site's id and fingerprint.
//!   - `nested.rs`: a `par!` inside another, registered once.
//!   - `names.rs`: the expansion's hygienic locals.
//!
//! The path of one `#[pp::parallel] fn f(A, B) -> R`: `parallel::expand` parses the item;
//! `parallel::signature::check_signature` rejects what cannot be a job (generics, `async`,
//! references, ...) with spanned errors; `parallel::generate::expand_fn` then writes the
//! body as a hidden `__pp_task_f`, `f` as a `const` `::pp::__private::Task<fn(A, B) -> R>`
//! (id `module::path::f`, fingerprint of the signature text), an `assert_portable` per
//! type, and an entry `fn __pp_invoke_f(&[u8])` registered in `::pp::__private::TASKS`
//! through `linkme`, with `::pp::__private::HOOKS`. An impl block gets the same per method,
//! as associated constants.
//!
//! The path of one `par!(sum for k: u64 in 0..n { ... })`: `par::expand` parses the tokens
//! into a `par::input::ParInput`; `par::body_check::check_body` checks the body;
//! `par::generate::generate` writes a block that evaluates the server and chunk count,
//! splits the range with `::pp::__private::par::Split`, defines and registers
//! `__pp_par_chunk` (`par::registration`, its body from `par::fold`), runs the body again as
//! a local closure over each chunk through `::pp::__private::par::run_at` (or `find_at` for
//! the reductions that stop early), and combines the partials in chunk order.

mod errors;
mod par;
mod parallel;
mod task_record;
mod token_text;

use proc_macro::TokenStream;

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
    parallel::expand(args.into(), input.into()).into()
}

/// Runs a serial `for` loop with a reduction as chunked jobs on a `pp::Server`, with the
/// result of the serial loop.
///
/// ```ignore
/// // ln 2 = 1 - 1/2 + 1/3 - ...: the same sum as the serial loop, on every core
/// let ln2 = pp::par!(sum for k: u64 in 1..20_000_000 {
///     if k % 2 == 1 { 1.0 / k as f64 } else { -1.0 / k as f64 }
/// });
///
/// // values from around the loop are named, with their types, in `with (...)`
/// let hash = md5_hex("1829182");
/// let found = pp::par!(with (hash: String) find for i: u64 in 1..2_000_000 {
///     (md5_hex(&i.to_string()) == *hash).then_some(i)
/// });
///
/// // options come first: the server (default: a process-wide one) and the chunk count
/// let data: Vec<u32> = (0..1000).collect();
/// let threes = pp::par!(server = &server, chunks = 64, count for x: &u32 in &data {
///     *x % 3 == 0
/// });
/// ```
///
/// # Syntax
/// `par!( [server = <&Server>,] [chunks = <usize>,] [with (<name>: <Type>, ...)] <reduction>
/// for <var>: <Type> in <source> { <body> } )`
///
/// - **source**: an integer range with both ends, `a..b` or `a..=b`, of any integer type
///   (`i8` to `i128`, `u8` to `u128`, `isize`, `usize`; `..=MAX` does not overflow); or a
///   borrowed slice, array or `Vec`, `&v`, whose elements the loop borrows.
/// - **loop variable**: a name (`k`, `mut k`) or `_`, with its type: the integer type for a
///   range (`k: u64`), a reference for a slice (`x: &u32`). The type is needed because the
///   loop also compiles to a function of its own (see *Cluster* below).
/// - **body**: a block whose value is what the iteration contributes to the reduction.
///
/// # Reductions
/// | reduction | body's value | result | empty loop |
/// |---|---|---|---|
/// | `sum` | `T: Add + Sum` | `T` | `0` (`-0.0` for floats, as `Iterator::sum`) |
/// | `product` | `T: Mul + Product` | `T` | `1` |
/// | `min` | `T: Ord` | `Option<T>`, the first of equal minima | `None` |
/// | `max` | `T: Ord` | `Option<T>`, the last of equal maxima | `None` |
/// | `count` | `bool` | `usize`: iterations that gave `true` | `0` |
/// | `any` | `bool` | `bool`: whether one gave `true` | `false` |
/// | `all` | `bool` | `bool`: whether all gave `true` | `true` |
/// | `find` | `Option<T>` | `Option<T>`: the first `Some` in iteration order | `None` |
/// | `collect` | `T` | `Vec<T>` in iteration order | empty |
/// | `reduce(identity, combine)` | `T` | `T` | `identity` |
///
/// `min` and `max` follow `Iterator::min` and `Iterator::max`, which floats do not satisfy;
/// for floats use `reduce(f64::INFINITY, f64::min)`. `reduce` folds each chunk from
/// `identity` with `combine: FnMut(T, T) -> T` and then folds the chunks' results the same
/// way, in order: `identity` must be neutral and `combine` associative, as for any parallel
/// reduction (`reduce((), |(), ()| ())` runs a loop for its effects only).
///
/// `find`, `any` and `all` stop early: once a chunk has its answer, chunks after it that
/// have not started are skipped (a chunk also stops at its own first hit). Chunks before it
/// still run, so `find` returns the first hit in iteration order, as the serial loop does.
///
/// # Options
/// - `server = <expr>`: the `&pp::Server` to run on. Default: a process-wide server
///   started on first use as `pp::Server::new()` does (one worker per core, cluster
///   settings from the environment) and kept until the process ends.
/// - `chunks = <expr>`: the number of chunks (a `usize`, at least 1). Default: 16 per
///   local worker of the server, enough to balance chunks of unequal cost. Never more
///   chunks than iterations.
///
/// # Captures
/// The body runs as separate jobs, so it sees only its loop variable, the values named in
/// `with (name: Type, ...)`, and items (functions, constants, statics). A capture is a
/// variable of the enclosing code; the body sees it by reference (`hash: &String` for
/// `with (hash: String)`), shared by all chunks, nothing is copied. Capture types, slice
/// element types and the reduction's partial results must be owned serde types
/// (`pp::Portable`), because each chunk can also run in another process (see *Cluster*).
///
/// # Determinism
/// The range (or slice) is cut into chunks of equal length that depend only on its length
/// and the chunk count, never on the number of workers or on timing; each chunk runs the
/// serial loop in order, and the chunks' results are combined in chunk order. So the
/// result is the same bits from run to run and for any number of workers, given the same
/// chunk count: pass `chunks = N` when a floating-point result must not change with the
/// machine (the default chunk count depends on the worker count).
///
/// # Cluster
/// The chunks run on the server's local workers: they borrow the caller's data, so they
/// are never handed to a remote node as they are. Each `par!` site is nonetheless also a
/// registered task, with the id `module::path::par@line:column#tokenhash`, whose arguments
/// are `(lo, hi, (captures...))` for the chunk `lo..=hi` of a range, or
/// `(Vec<T>, (captures...))` for the elements of a slice chunk, and whose result is the
/// chunk's partial result: a process built from the same source can run any chunk from
/// bytes alone, as it runs a `#[pp::parallel]` function. That is what lets the cluster run
/// chunks with no change to the loop.
///
/// # Panics
/// A panic in the body is caught on the worker; chunks not yet started are skipped, and
/// once the started ones have finished, the panic of the lowest panicking chunk resumes in
/// the caller. `chunks = 0` panics. The default server panics on first use if it cannot
/// start its threads.
///
/// # Compile errors
/// Each of these is an error at the offending span, with a message that says what to do:
/// - `break`, `continue`, `return`, `?` or `.await` that would leave the body (inside a
///   closure, an async block or a loop of the body's own, they are fine);
/// - a local variable used in the body but not named in `with (...)`;
/// - a loop without a reduction, an unknown reduction or option, an option set twice;
/// - a loop variable without a type, or over something that is neither a range with both
///   ends nor `&slice`; a non-integer range type;
/// - a body whose value does not fit the reduction (`count` of a non-`bool`, `min` of a
///   float, `sum` of a `String`); a capture or result type that is not serde-encodable.
///
/// Inside a job (or inside another `par!`) the calling worker runs chunks too, so nested
/// `par!` loops on one server do not deadlock.
#[proc_macro]
pub fn par(input: TokenStream) -> TokenStream {
    par::expand(input.into()).into()
}
