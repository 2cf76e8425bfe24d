//! The hygienic names of a `par!` expansion's locals.

use proc_macro2::Span;
use syn::Ident;

/// Hygienic names of the expansion's locals: mixed-site spans, so that they never clash
/// with the user's names, nor the user's body see them.
pub(crate) struct Names {
    /// The `&Server` the site runs on.
    pub(crate) server: Ident,
    /// The chunk count.
    pub(crate) chunks: Ident,
    /// How the range (or the slice's indices) is cut into chunks.
    pub(crate) split: Ident,
    /// The borrowed slice, over a slice.
    pub(crate) slice: Ident,
    /// First bound of one chunk (inclusive).
    pub(crate) lo: Ident,
    /// Last bound of one chunk (inclusive).
    pub(crate) hi: Ident,
    /// The running index of a chunk over a range.
    pub(crate) k: Ident,
    /// The running element of a chunk over a slice.
    pub(crate) x: Ident,
    /// A chunk's elements, over a slice.
    pub(crate) items: Ident,
    /// The accumulator of a chunk, or of the combined partials.
    pub(crate) acc: Ident,
    /// One iteration's value, for the reductions that test it.
    pub(crate) item: Ident,
    /// `reduce`'s combine function, typed by `combiner`.
    pub(crate) combine: Ident,
    /// The local closure over one chunk.
    pub(crate) chunk: Ident,
    /// The chunks' partial results, and the site's result.
    pub(crate) parts: Ident,
    /// A chunk's index.
    pub(crate) index: Ident,
    /// The encoded arguments of the registered entry point.
    pub(crate) args: Ident,
}

impl Names {
    /// The names, one set per expansion.
    pub(crate) fn new() -> Self {
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
