//! Parsing of `par!`'s input into a [`ParInput`]: options, captures, the reduction and the
//! `for` loop (its variable, its source and its body, which [`super::body_check`] checks).
//!
//! Every misuse becomes a spanned `syn::Error`; nothing here panics.

use super::nested::LOCAL_COPY;
use crate::errors::Errors;
use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Block, Expr, Ident, Pat, RangeLimits, Stmt, Token, Type};

syn::custom_keyword!(with);

/// A parsed `par!` invocation.
pub(crate) struct ParInput {
    /// Whether to define and register the site's chunk function.
    pub(crate) register: bool,
    /// `server = <expr>`: a `&pp::Server`.
    pub(crate) server: Option<Expr>,
    /// `chunks = <expr>`: a `usize`.
    pub(crate) chunks: Option<Expr>,
    /// `with (name: Type, ...)`.
    pub(crate) captures: Vec<Capture>,
    /// What the loop computes.
    pub(crate) reduction: Reduction,
    /// The loop variable as a pattern: `k`, `mut k` or `_`.
    pub(crate) var: Pat,
    /// Its type as written: `u64`, or `&T` over a slice.
    pub(crate) var_ty: Type,
    /// What the loop runs over.
    pub(crate) source: Source,
    /// The loop body: its value is what one iteration contributes.
    pub(crate) body: Block,
}

impl ParInput {
    /// The span errors about the body's value point at: its last expression.
    pub(crate) fn value_span(&self) -> Span {
        match self.body.stmts.last() {
            Some(Stmt::Expr(expr, None)) => expr.span(),
            _ => self.body.span(),
        }
    }
}

/// One value named in `with (...)`.
pub(crate) struct Capture {
    /// The caller's variable, seen by the body as a reference of the same name.
    pub(crate) name: Ident,
    /// Its type as written (the body sees `&ty`).
    pub(crate) ty: Type,
}

/// What the loop computes.
pub(crate) struct Reduction {
    /// Which reduction.
    pub(crate) kind: ReductionKind,
    /// The keyword, for spans.
    pub(crate) keyword: Ident,
}

/// The reductions `par!` knows.
pub(crate) enum ReductionKind {
    /// `sum`: the sum of the values.
    Sum,
    /// `product`: their product.
    Product,
    /// `min`: the first of equal minima, if any.
    Min,
    /// `max`: the last of equal maxima, if any.
    Max,
    /// `count`: how many values are `true`.
    Count,
    /// `any`: whether one value is `true` (stops early).
    Any,
    /// `all`: whether all values are `true` (stops early).
    All,
    /// `find`: the first `Some` in iteration order (stops early).
    Find,
    /// `collect`: every value, in iteration order.
    Collect,
    /// `reduce(identity, combine)`: the user's fold.
    Reduce {
        /// The neutral value each chunk (and the combination of chunks) starts from.
        identity: Box<Expr>,
        /// `FnMut(T, T) -> T`, associative.
        combine: Box<Expr>,
    },
}

/// What the loop runs over.
pub(crate) enum Source {
    /// `start..end` or `start..=end`.
    Range {
        /// The first value.
        start: Box<Expr>,
        /// The end, excluded unless `inclusive`.
        end: Box<Expr>,
        /// `..=` rather than `..`.
        inclusive: bool,
    },
    /// `&expr` (a slice, array or `Vec`), with the element type `T` of `x: &T`.
    Slice {
        /// The borrow as written, `&v`.
        expr: Box<Expr>,
        /// The element type.
        elem: Box<Type>,
    },
}

/// The reductions, as error messages list them.
const REDUCTIONS: &str =
    "`sum`, `product`, `min`, `max`, `count`, `any`, `all`, `find`, `collect` or `reduce(identity, combine)`";

impl Parse for ParInput {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        // Mistakes that do not stop the parse are collected, so that all of them show.
        let mut errors = Errors::default();
        match parse_input(input, &mut errors) {
            Ok(parsed) => errors.finish().map(|()| parsed),
            Err(error) => {
                errors.push_error(error);
                Err(errors.into_error())
            }
        }
    }
}

/// The whole input, in order: an optional local-copy marker (see
/// [`LOCAL_COPY`]), the options, the captures, the reduction and the loop.
fn parse_input(input: ParseStream<'_>, errors: &mut Errors) -> syn::Result<ParInput> {
    let register = !(input.peek(Token![@]) && input.peek2(Ident));
    if !register {
        input.parse::<Token![@]>()?;
        let marker: Ident = input.parse()?;
        if marker != LOCAL_COPY {
            return Err(syn::Error::new(marker.span(), "unexpected `@` in `par!`"));
        }
        input.parse::<Token![;]>()?;
    }
    let (server, chunks) = parse_options(input)?;
    let captures = if input.peek(with) {
        parse_captures(input)?
    } else {
        Vec::new()
    };
    let reduction = parse_reduction(input, errors)?;
    input.parse::<Token![for]>()?;
    let var = Pat::parse_single(input)?;
    check_var(&var, errors);
    if !input.peek(Token![:]) {
        return Err(syn::Error::new(
            var.span(),
            "the loop variable needs its type, as in `for k: u64 in 0..n` (or `x: &T` over a slice): each `par!` site compiles to a function of its own, which cannot infer it",
        ));
    }
    input.parse::<Token![:]>()?;
    let var_ty: Type = input.parse()?;
    input.parse::<Token![in]>()?;
    let iter = Expr::parse_without_eager_brace(input)?;
    let body: Block = input.parse()?;
    if !input.is_empty() {
        errors.push(
            input.span(),
            "unexpected tokens after the loop body: `par!` takes one `for` loop",
        );
    }
    if let Pat::Ident(pat) = &var {
        if let Some(capture) = captures.iter().find(|c| c.name == pat.ident) {
            errors.push(
                capture.name.span(),
                format!("`{}` is both the loop variable and a capture", capture.name),
            );
        }
    }
    let source = classify_source(&iter, &var_ty)?;
    Ok(ParInput {
        register,
        server,
        chunks,
        captures,
        reduction,
        var,
        var_ty,
        source,
        body,
    })
}

/// `server = expr,` and `chunks = expr,`, each at most once.
fn parse_options(input: ParseStream<'_>) -> syn::Result<(Option<Expr>, Option<Expr>)> {
    let (mut server, mut chunks) = (None, None);
    while input.peek(Ident) && input.peek2(Token![=]) && !input.peek2(Token![==]) {
        let name: Ident = input.parse()?;
        input.parse::<Token![=]>()?;
        let value: Expr = input.parse()?;
        let slot = match name.to_string().as_str() {
            "server" => &mut server,
            "chunks" => &mut chunks,
            other => {
                return Err(syn::Error::new(
                    name.span(),
                    format!("unknown `par!` option `{other}`: the options are `server = &server` and `chunks = n`"),
                ))
            }
        };
        if slot.is_some() {
            return Err(syn::Error::new(
                name.span(),
                format!("the `par!` option `{name}` is set more than once"),
            ));
        }
        *slot = Some(value);
        if !input.peek(Token![,]) {
            return Err(input.error(format!("expected `,` after the option `{name} = ...`")));
        }
        input.parse::<Token![,]>()?;
    }
    Ok((server, chunks))
}

/// `with (name: Type, ...)`, with an optional comma after it.
fn parse_captures(input: ParseStream<'_>) -> syn::Result<Vec<Capture>> {
    let keyword: with = input.parse()?;
    if !input.peek(syn::token::Paren) {
        return Err(syn::Error::new(
            keyword.span,
            "`with` takes a parenthesised list of captures: `with (name: Type, ...)`",
        ));
    }
    let content;
    let parens = syn::parenthesized!(content in input);
    let list = Punctuated::<CaptureSyntax, Token![,]>::parse_terminated(&content)?;
    if list.is_empty() {
        return Err(syn::Error::new(
            parens.span.join(),
            "`with ()` names no capture: remove it",
        ));
    }
    let mut captures: Vec<Capture> = Vec::new();
    for CaptureSyntax(capture) in list {
        if captures.iter().any(|c| c.name == capture.name) {
            return Err(syn::Error::new(
                capture.name.span(),
                format!("`{}` is captured twice", capture.name),
            ));
        }
        captures.push(capture);
    }
    if input.peek(Token![,]) {
        input.parse::<Token![,]>()?;
    }
    Ok(captures)
}

/// One `name: Type` of `with (...)`, parsed by `Punctuated`.
struct CaptureSyntax(Capture);

impl Parse for CaptureSyntax {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let name: Ident = input.parse()?;
        if !input.peek(Token![:]) {
            return Err(syn::Error::new(
                name.span(),
                format!("a capture needs its type, as in `with ({name}: String)`; the body sees it as a reference"),
            ));
        }
        input.parse::<Token![:]>()?;
        let ty: Type = input.parse()?;
        Ok(CaptureSyntax(Capture { name, ty }))
    }
}

/// The reduction keyword (and `reduce`'s arguments). A missing reduction is reported and
/// parsing goes on, so that other mistakes show too.
fn parse_reduction(input: ParseStream<'_>, errors: &mut Errors) -> syn::Result<Reduction> {
    if input.peek(Token![for]) {
        let span = input.span();
        errors.push(
            span,
            format!("a `par!` loop needs a reduction before `for`: {REDUCTIONS}, as in `par!(sum for k: u64 in 0..n {{ ... }})`"),
        );
        return Ok(Reduction {
            kind: ReductionKind::Collect,
            keyword: Ident::new("collect", span),
        });
    }
    let keyword: Ident = input
        .parse()
        .map_err(|e| syn::Error::new(e.span(), format!("expected a reduction: {REDUCTIONS}")))?;
    let name = keyword.to_string();
    if input.peek(Token![=]) && (name == "server" || name == "chunks") {
        return Err(syn::Error::new(
            keyword.span(),
            format!("the option `{name} = ...` must come first, before `with (...)`"),
        ));
    }
    let kind = match name.as_str() {
        "sum" => ReductionKind::Sum,
        "product" => ReductionKind::Product,
        "min" => ReductionKind::Min,
        "max" => ReductionKind::Max,
        "count" => ReductionKind::Count,
        "any" => ReductionKind::Any,
        "all" => ReductionKind::All,
        "find" => ReductionKind::Find,
        "collect" => ReductionKind::Collect,
        "reduce" => parse_reduce_args(input, &keyword)?,
        other => {
            return Err(syn::Error::new(
                keyword.span(),
                format!("unknown reduction `{other}`: expected {REDUCTIONS}"),
            ))
        }
    };
    Ok(Reduction { kind, keyword })
}

/// `reduce`'s `(identity, combine)`, exactly two expressions.
fn parse_reduce_args(input: ParseStream<'_>, keyword: &Ident) -> syn::Result<ReductionKind> {
    let usage =
        "`reduce` takes an identity and a combine function, as in `reduce(0, |a, b| a + b)`";
    if !input.peek(syn::token::Paren) {
        return Err(syn::Error::new(keyword.span(), usage));
    }
    let content;
    let parens = syn::parenthesized!(content in input);
    let args = Punctuated::<Expr, Token![,]>::parse_terminated(&content)?;
    if args.len() != 2 {
        return Err(syn::Error::new(parens.span.join(), usage));
    }
    let mut args = args.into_iter();
    match (args.next(), args.next()) {
        (Some(identity), Some(combine)) => Ok(ReductionKind::Reduce {
            identity: Box::new(identity),
            combine: Box::new(combine),
        }),
        _ => Err(syn::Error::new(parens.span.join(), usage)),
    }
}

/// The loop variable is a name (`k`, `mut k`) or `_`.
fn check_var(var: &Pat, errors: &mut Errors) {
    match var {
        Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => {}
        Pat::Wild(_) => {}
        other => errors.push(
            other.span(),
            "the loop variable of `par!` must be a plain name (`k`, `mut k`) or `_`; destructure it in the body",
        ),
    }
}

/// A range with both ends, or a shared borrow of a slice, array or `Vec`.
fn classify_source(iter: &Expr, var_ty: &Type) -> syn::Result<Source> {
    match iter {
        Expr::Paren(inner) => classify_source(&inner.expr, var_ty),
        Expr::Group(inner) => classify_source(&inner.expr, var_ty),
        Expr::Range(range) => {
            let (Some(start), Some(end)) = (&range.start, &range.end) else {
                return Err(syn::Error::new(
                    range.span(),
                    "`par!` needs both ends of the range, as in `a..b` or `a..=b`: it splits a known number of iterations",
                ));
            };
            if let Type::Reference(reference) = var_ty {
                return Err(syn::Error::new(
                    reference.span(),
                    "over a range, the loop variable is an integer, as in `k: u64`, not a reference",
                ));
            }
            if let Type::Path(path) = var_ty {
                if let Some(name) = path.path.get_ident().map(Ident::to_string) {
                    if ["f32", "f64", "bool", "char", "str", "String"].contains(&name.as_str()) {
                        return Err(syn::Error::new(
                            path.span(),
                            format!("`{name}` is not an integer type: `par!` splits ranges of integers (`i8` to `u128`, `isize`, `usize`); to loop over other values, put them in a `Vec` and loop over `&vec` with `x: &T`"),
                        ));
                    }
                }
            }
            Ok(Source::Range {
                start: start.clone(),
                end: end.clone(),
                inclusive: matches!(range.limits, RangeLimits::Closed(_)),
            })
        }
        Expr::Reference(reference) => {
            if let Some(token) = &reference.mutability {
                return Err(syn::Error::new(
                    token.span(),
                    "`par!` only reads the slice: borrow it with `&`, not `&mut`",
                ));
            }
            match var_ty {
                Type::Reference(ty) if ty.mutability.is_none() && ty.lifetime.is_none() => {
                    Ok(Source::Slice {
                        expr: Box::new(iter.clone()),
                        elem: ty.elem.clone(),
                    })
                }
                Type::Reference(ty) => Err(syn::Error::new(
                    ty.span(),
                    "over a slice, the loop variable is a shared reference without a lifetime, as in `x: &u32`",
                )),
                other => Err(syn::Error::new(
                    other.span(),
                    "over a slice, the loop variable borrows each element: write its type as a reference, as in `x: &u32`",
                )),
            }
        }
        other => Err(syn::Error::new(
                other.span(),
                "`par!` splits an integer range (`a..b`, `a..=b`) or a borrowed slice, array or `Vec` (`&v`), and this is neither: to loop over another iterator, collect it into a `Vec` and loop over `&vec`",
        )),
    }
}
