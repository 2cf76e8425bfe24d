//! A `par!` nested in the body of another. The outer body is compiled twice, as the
//! registered chunk function and as the local closure; the nested site must be registered
//! once, so the local copy of it is marked and skips its registration; its id is hashed
//! without the mark, so both copies name the same registered site.

use proc_macro2::{Group, Ident, Punct, Spacing, TokenStream, TokenTree};

/// Marks a `par!` nested in the body of another, in the copy of that body that runs
/// locally: the outer site's registered function holds the nested site's registration.
pub(crate) const LOCAL_COPY: &str = "__pp_local_copy";

/// A site's compact token text (see `compact`) without its local-copy marker, if it has
/// one: a nested site's id hashes this text, and the local copy must name the site by the
/// same id as the registered copy does (or a node could not find the local copy's chunks).
pub(crate) fn unmarked(text: String) -> String {
    let marker = format!("@{LOCAL_COPY};");
    match text.strip_prefix(&marker) {
        Some(rest) => rest.to_owned(),
        None => text,
    }
}

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
