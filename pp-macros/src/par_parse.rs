//! Parsing of `par!`: options, captures, the reduction and the `for` loop, and the checks on
//! the loop body (nothing may leave it, and it may use only what it named).
//!
//! Every misuse becomes a spanned `syn::Error`; nothing here panics.

use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Block, Expr, Ident, Pat, RangeLimits, Stmt, Token, Type};

syn::custom_keyword!(with);

/// Marks a `par!` nested in the body of another, in the copy of that body that runs
/// locally: the outer site's registered function holds the nested site's registration.
pub(crate) const LOCAL_COPY: &str = "__pp_local_copy";

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
    pub(crate) reduction: Reduction,
    /// The loop variable as a pattern: `k`, `mut k` or `_`.
    pub(crate) var: Pat,
    /// Its type as written: `u64`, or `&T` over a slice.
    pub(crate) var_ty: Type,
    pub(crate) source: Source,
    pub(crate) body: Block,
}

/// One value named in `with (...)`.
pub(crate) struct Capture {
    pub(crate) name: Ident,
    pub(crate) ty: Type,
}

/// What the loop computes.
pub(crate) struct Reduction {
    pub(crate) kind: ReductionKind,
    /// The keyword, for spans.
    pub(crate) keyword: Ident,
}

/// The reductions `par!` knows.
pub(crate) enum ReductionKind {
    Sum,
    Product,
    Min,
    Max,
    Count,
    Any,
    All,
    Find,
    Collect,
    Reduce {
        identity: Box<Expr>,
        combine: Box<Expr>,
    },
}

/// What the loop runs over.
pub(crate) enum Source {
    /// `start..end` or `start..=end`.
    Range {
        start: Box<Expr>,
        end: Box<Expr>,
        inclusive: bool,
    },
    /// `&expr` (a slice, array or `Vec`), with the element type `T` of `x: &T`.
    Slice { expr: Box<Expr>, elem: Box<Type> },
}

const REDUCTIONS: &str =
    "`sum`, `product`, `min`, `max`, `count`, `any`, `all`, `find`, `collect` or `reduce(identity, combine)`";

/// Collects errors so that one expansion reports every problem it found.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, span: Span, message: impl std::fmt::Display) {
        self.push_error(syn::Error::new(span, message));
    }

    pub(crate) fn push_error(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub(crate) fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }

    /// The collected errors; called after at least one was pushed.
    fn into_error(self) -> syn::Error {
        self.0.unwrap_or_else(|| {
            syn::Error::new(
                Span::call_site(),
                "internal error in `par!`: please report it",
            )
        })
    }
}

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

/// Checks the body (and `reduce`'s arguments): nothing may leave the body (`break`,
/// `continue`, `return`, `?`, `.await` outside a closure or async block of its own), and
/// every local variable it uses must be the loop variable, a capture, or bound inside it.
pub(crate) fn check_body(input: &ParInput) -> syn::Result<()> {
    let mut errors = Errors::default();
    let captures: Vec<String> = input.captures.iter().map(|c| c.name.to_string()).collect();
    let mut scan = Scan::new(&mut errors, captures.clone());
    if let Pat::Ident(pat) = &input.var {
        scan.bind(pat.ident.to_string());
    }
    scan.block(&input.body);
    if let ReductionKind::Reduce { identity, combine } = &input.reduction.kind {
        let mut scan = Scan::new(&mut errors, captures);
        scan.closures = 1; // evaluated outside the loop: only captures and items are visible
        scan.expr(identity, Position::Value);
        scan.expr(combine, Position::Value);
    }
    errors.finish()
}

/// Where an expression stands, for the check of unnamed variables. A bare name as a callee
/// or a method's argument (`.map(helper)`) may well be a function of the module, so it is
/// not reported (rustc still rejects a local there, with its own message); an argument of
/// a function call or a macro is taken for a variable, since passing a function by name
/// there is rare (and `self::helper` says it is one).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Position {
    Value,
    Callee,
    CallArgument,
    Argument,
}

struct Scan<'a> {
    errors: &'a mut Errors,
    /// Names visible at this point, innermost last; `marks` records where scopes start.
    names: Vec<String>,
    marks: Vec<usize>,
    /// Closures and async blocks we are in: `return`, `?` and `.await` belong to them.
    closures: usize,
    /// Loops of the body we are in (outside closures): `break` and `continue` stay inside.
    loops: usize,
    labels: Vec<String>,
    reported: Vec<String>,
}

impl<'a> Scan<'a> {
    fn new(errors: &'a mut Errors, captures: Vec<String>) -> Self {
        Scan {
            errors,
            names: captures,
            marks: Vec::new(),
            closures: 0,
            loops: 0,
            labels: Vec::new(),
            reported: Vec::new(),
        }
    }

    fn bind(&mut self, name: String) {
        self.names.push(name);
    }

    fn push_scope(&mut self) {
        self.marks.push(self.names.len());
    }

    fn pop_scope(&mut self) {
        if let Some(mark) = self.marks.pop() {
            self.names.truncate(mark);
        }
    }

    fn block(&mut self, block: &Block) {
        self.push_scope();
        for stmt in &block.stmts {
            match stmt {
                Stmt::Local(local) => {
                    if let Some(init) = &local.init {
                        self.expr(&init.expr, Position::Value);
                        if let Some((_, diverge)) = &init.diverge {
                            self.expr(diverge, Position::Value);
                        }
                    }
                    self.pattern(&local.pat);
                }
                Stmt::Item(_) => {} // items cannot see locals; rustc checks them
                Stmt::Expr(expr, _) => self.expr(expr, Position::Value),
                Stmt::Macro(mac) => self.macro_args(&mac.mac),
            }
        }
        self.pop_scope();
    }

    /// Binds every name a pattern introduces.
    fn pattern(&mut self, pat: &Pat) {
        match pat {
            Pat::Ident(p) => {
                self.bind(p.ident.to_string());
                if let Some((_, sub)) = &p.subpat {
                    self.pattern(sub);
                }
            }
            Pat::Or(p) => p.cases.iter().for_each(|c| self.pattern(c)),
            Pat::Paren(p) => self.pattern(&p.pat),
            Pat::Reference(p) => self.pattern(&p.pat),
            Pat::Slice(p) => p.elems.iter().for_each(|e| self.pattern(e)),
            Pat::Struct(p) => p.fields.iter().for_each(|f| self.pattern(&f.pat)),
            Pat::Tuple(p) => p.elems.iter().for_each(|e| self.pattern(e)),
            Pat::TupleStruct(p) => p.elems.iter().for_each(|e| self.pattern(e)),
            Pat::Type(p) => self.pattern(&p.pat),
            _ => {}
        }
    }

    fn forbid(&mut self, span: Span, message: &str) {
        if self.closures == 0 {
            self.errors.push(span, message);
        }
    }

    fn leave_loop(&mut self, label: Option<&syn::Lifetime>, span: Span, what: &str) {
        if self.closures > 0 {
            return;
        }
        let inside = match label {
            Some(label) => self.labels.contains(&label.ident.to_string()),
            None => self.loops > 0,
        };
        if !inside {
            let message = if what == "break" {
                "`break` cannot leave a `par!` loop: its iterations run as separate chunks, in no fixed order; to stop at the first match, use the `find` or `any` reduction"
            } else {
                "`continue` cannot be used in a `par!` body: the body's value is what the iteration contributes; give a neutral value instead (`0` for `sum`, `false` for `count`, `None` for `find`)"
            };
            self.errors.push(span, message);
        }
    }

    fn looped(&mut self, label: Option<&syn::Label>, body: &Block) {
        if let Some(label) = label {
            self.labels.push(label.name.ident.to_string());
        }
        self.loops += 1;
        self.block(body);
        self.loops -= 1;
        if label.is_some() {
            self.labels.pop();
        }
    }

    fn closure_like(&mut self, f: impl FnOnce(&mut Self)) {
        let loops = std::mem::replace(&mut self.loops, 0);
        self.closures += 1;
        self.push_scope();
        f(self);
        self.pop_scope();
        self.closures -= 1;
        self.loops = loops;
    }

    fn path(&mut self, path: &syn::ExprPath, position: Position) {
        if path.qself.is_some() || path.path.leading_colon.is_some() {
            return;
        }
        let [segment] = path.path.segments.iter().collect::<Vec<_>>()[..] else {
            return;
        };
        if !segment.arguments.is_none() {
            return;
        }
        let name = segment.ident.to_string();
        if name == "self" {
            if !self.reported.contains(&name) {
                self.reported.push(name);
                self.errors.push(
                    segment.ident.span(),
                    "`self` cannot be used in a `par!` body: the body runs as separate jobs; name the values it needs in `with (name: Type, ...)`",
                );
            }
            return;
        }
        let local_like = name.starts_with(|c: char| c.is_lowercase() || c == '_');
        if matches!(position, Position::Callee | Position::Argument)
            || !local_like
            || self.names.contains(&name)
            || self.reported.contains(&name)
        {
            return;
        }
        let function = if position == Position::CallArgument {
            format!(" (if `{name}` is a function, write `self::{name}`)")
        } else {
            String::new()
        };
        self.errors.push(
            segment.ident.span(),
            format!("`{name}` is used in the `par!` body but not named in `with (...)`: add `with ({name}: Type)` before the reduction{function}. A `par!` body runs as separate jobs, so it sees only its loop variable, the values named in `with (...)` (by reference), and items such as functions, constants and statics"),
        );
        self.reported.push(name);
    }

    fn macro_args(&mut self, mac: &syn::Macro) {
        // Most macros in a body take expressions (`format!`, `assert!`, `vec!`): check
        // those; anything else is left to rustc.
        if let Ok(args) = mac.parse_body_with(Punctuated::<Expr, Token![,]>::parse_terminated) {
            for arg in &args {
                self.expr(arg, Position::CallArgument);
            }
        }
    }

    fn expr(&mut self, expr: &Expr, position: Position) {
        use Position::{Argument, CallArgument, Callee, Value};
        match expr {
            Expr::Array(e) => e.elems.iter().for_each(|x| self.expr(x, Value)),
            Expr::Assign(e) => {
                self.expr(&e.left, Value);
                self.expr(&e.right, Value);
            }
            Expr::Async(e) => self.closure_like(|s| s.block(&e.block)),
            Expr::Await(e) => {
                self.forbid(
                    e.await_token.span(),
                    "`.await` cannot be used in a `par!` body: chunks run as plain functions on worker threads, outside the async task",
                );
                self.expr(&e.base, Value);
            }
            Expr::Binary(e) => {
                self.expr(&e.left, Value);
                self.expr(&e.right, Value);
            }
            Expr::Block(e) => {
                if let Some(label) = &e.label {
                    self.labels.push(label.name.ident.to_string());
                    self.block(&e.block);
                    self.labels.pop();
                } else {
                    self.block(&e.block);
                }
            }
            Expr::Break(e) => {
                self.leave_loop(e.label.as_ref(), e.break_token.span(), "break");
                if let Some(value) = &e.expr {
                    self.expr(value, Value);
                }
            }
            Expr::Call(e) => {
                self.expr(&e.func, Callee);
                e.args.iter().for_each(|a| self.expr(a, CallArgument));
            }
            Expr::Cast(e) => self.expr(&e.expr, Value),
            Expr::Closure(e) => self.closure_like(|s| {
                e.inputs.iter().for_each(|p| s.pattern(p));
                s.expr(&e.body, Value);
            }),
            Expr::Continue(e) => {
                self.leave_loop(e.label.as_ref(), e.continue_token.span(), "continue")
            }
            Expr::Field(e) => self.expr(&e.base, Value),
            Expr::ForLoop(e) => {
                self.expr(&e.expr, Value);
                self.push_scope();
                self.pattern(&e.pat);
                self.looped(e.label.as_ref(), &e.body);
                self.pop_scope();
            }
            Expr::Group(e) => self.expr(&e.expr, position),
            Expr::If(e) => {
                self.push_scope();
                self.expr(&e.cond, Value); // `let` conditions bind into this scope
                self.block(&e.then_branch);
                self.pop_scope();
                if let Some((_, other)) = &e.else_branch {
                    self.expr(other, Value);
                }
            }
            Expr::Index(e) => {
                self.expr(&e.expr, Value);
                self.expr(&e.index, Value);
            }
            Expr::Let(e) => {
                self.expr(&e.expr, Value);
                self.pattern(&e.pat);
            }
            Expr::Loop(e) => self.looped(e.label.as_ref(), &e.body),
            Expr::Macro(e) => self.macro_args(&e.mac),
            Expr::Match(e) => {
                self.expr(&e.expr, Value);
                for arm in &e.arms {
                    self.push_scope();
                    self.pattern(&arm.pat);
                    if let Some((_, guard)) = &arm.guard {
                        self.expr(guard, Value);
                    }
                    self.expr(&arm.body, Value);
                    self.pop_scope();
                }
            }
            Expr::MethodCall(e) => {
                self.expr(&e.receiver, Value);
                e.args.iter().for_each(|a| self.expr(a, Argument));
            }
            Expr::Paren(e) => self.expr(&e.expr, position),
            Expr::Path(e) => self.path(e, position),
            Expr::Range(e) => {
                if let Some(start) = &e.start {
                    self.expr(start, Value);
                }
                if let Some(end) = &e.end {
                    self.expr(end, Value);
                }
            }
            Expr::RawAddr(e) => self.expr(&e.expr, Value),
            Expr::Reference(e) => self.expr(&e.expr, Value),
            Expr::Repeat(e) => self.expr(&e.expr, Value),
            Expr::Return(e) => {
                self.forbid(
                    e.return_token.span(),
                    "`return` cannot be used in a `par!` body: the body is the value of one iteration, not a function; make the value its last expression",
                );
                if let Some(value) = &e.expr {
                    self.expr(value, Value);
                }
            }
            Expr::Struct(e) => {
                e.fields.iter().for_each(|f| self.expr(&f.expr, Value));
                if let Some(rest) = &e.rest {
                    self.expr(rest, Value);
                }
            }
            Expr::Try(e) => {
                self.forbid(
                    e.question_token.span(),
                    "`?` cannot be used in a `par!` body: there is no function to return the error from; handle it in the body, for example with `match`, or `.ok()` and the `find` reduction",
                );
                self.expr(&e.expr, Value);
            }
            Expr::TryBlock(e) => self.closure_like(|s| s.block(&e.block)),
            Expr::Tuple(e) => e.elems.iter().for_each(|x| self.expr(x, Value)),
            Expr::Unary(e) => self.expr(&e.expr, Value),
            Expr::Unsafe(e) => self.block(&e.block),
            Expr::While(e) => {
                self.push_scope();
                self.expr(&e.cond, Value);
                self.looped(e.label.as_ref(), &e.body);
                self.pop_scope();
            }
            // Constants, literals, `const` blocks, and syntax syn keeps as tokens.
            _ => {}
        }
    }
}
