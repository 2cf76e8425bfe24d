//! The checks on a `par!` loop's body: nothing may leave it (`break`, `continue`, `return`,
//! `?`, `.await`), since each chunk runs it as a function of its own; and it may use only
//! its loop variable, its captures and what it binds itself, since a chunk may run in
//! another process where nothing else of the caller exists.

use super::input::{ParInput, ReductionKind};
use crate::errors::Errors;
use proc_macro2::Span;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Block, Expr, Pat, Stmt, Token};

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
    /// Anywhere else: a bare name must be in scope.
    Value,
    /// The function of a call: `helper(x)`.
    Callee,
    /// An argument of a function or macro call: `f(x)`, `format!("{}", x)`.
    CallArgument,
    /// An argument of a method call: `.map(helper)`.
    MethodArgument,
}

/// A walk over the body's syntax that reports what may not be there: names of the
/// caller's scope and jumps out of the body. It keeps the names in scope as it goes,
/// since a name bound inside the body is the body's own.
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
    /// A walk that sees `captures` (and items) and reports into `errors`.
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

    /// Makes `name` visible until the current scope ends.
    fn bind(&mut self, name: String) {
        self.names.push(name);
    }

    /// Starts a scope: names bound from here on end with it.
    fn push_scope(&mut self) {
        self.marks.push(self.names.len());
    }

    /// Ends the innermost scope and forgets the names it bound.
    fn pop_scope(&mut self) {
        if let Some(mark) = self.marks.pop() {
            self.names.truncate(mark);
        }
    }

    /// Walks a block in a scope of its own, binding its `let`s in order.
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

    /// Reports a jump (`return`, `?`, `.await`) unless a closure or async block of the body
    /// is where it goes.
    fn forbid(&mut self, span: Span, message: &str) {
        if self.closures == 0 {
            self.errors.push(span, message);
        }
    }

    /// Reports a `break` or `continue` (`what`) that would leave the body rather than a loop
    /// or labelled block of its own.
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

    /// Walks a loop's body, inside which `break` and `continue` stay in the body.
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

    /// Walks a closure, async block or try block: jumps in it end there, and the loops
    /// around it are not its own.
    fn closure_like(&mut self, f: impl FnOnce(&mut Self)) {
        let loops = std::mem::replace(&mut self.loops, 0);
        self.closures += 1;
        self.push_scope();
        f(self);
        self.pop_scope();
        self.closures -= 1;
        self.loops = loops;
    }

    /// Reports `self`, and a bare lower-case name that is neither in scope nor likely a
    /// function at `position`: a variable of the caller that the body did not name.
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
        if matches!(position, Position::Callee | Position::MethodArgument)
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

    /// Walks a macro call's arguments when they parse as expressions.
    fn macro_args(&mut self, mac: &syn::Macro) {
        // Most macros in a body take expressions (`format!`, `assert!`, `vec!`): check
        // those; anything else is left to rustc.
        if let Ok(args) = mac.parse_body_with(Punctuated::<Expr, Token![,]>::parse_terminated) {
            for arg in &args {
                self.expr(arg, Position::CallArgument);
            }
        }
    }

    /// Walks an expression standing at `position`.
    fn expr(&mut self, expr: &Expr, position: Position) {
        use Position::{CallArgument, Callee, MethodArgument, Value};
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
                e.args.iter().for_each(|a| self.expr(a, MethodArgument));
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
