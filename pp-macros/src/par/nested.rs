//! A `par!` nested in the body of another. The outer body is compiled twice, as the
//! registered chunk function and as the local closure; the nested site must be registered
//! once, so the local copy of it is marked and skips its registration.

use proc_macro2::{Group, Ident, Punct, Spacing, TokenStream, TokenTree};

/// Marks a `par!` nested in the body of another, in the copy of that body that runs
/// locally: the outer site's registered function holds the nested site's registration.
pub(crate) const LOCAL_COPY: &str = "__pp_local_copy";

/// Marks every `par!(...)` in `tokens` as a local copy (see [`LOCAL_COPY`]), so that a
/// nested site is registered once, from the outer site's registered function, and not a
/// second time from the outer site's local closure.
pub(crate) fn mark_nested(tokens: TokenStream) -> TokenStream {
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
