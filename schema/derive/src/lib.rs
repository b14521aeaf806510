//! Derive macros for `xbus-schema`: `#[derive(Event)]` and `#[derive(EventSet)]`.
//!
//! Use them through `xbus_schema` (or the `xbus` facade), which documents the attributes.
//! Each derive runs in three steps, as in `thiserror`: `ast` parses the input and its
//! attributes, `valid` checks the rules (the NAME rule is `xbus-names`, shared with the
//! schema crate; failures are `syn::Error`s spanned at the offending tokens), and `expand` generates the impl. Generated code names only paths under the
//! schema crate (`::xbus_schema` by default, or the `crate = "..."` override).

mod ast;
mod expand;
mod valid;

use proc_macro::TokenStream;
use syn::{parse_macro_input, DeriveInput};

/// Implements `xbus_schema::Event` for a struct. See the `xbus_schema` crate docs.
#[proc_macro_derive(Event, attributes(event))]
pub fn derive_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    ast::EventInput::from_syn(&input)
        .and_then(|ev| expand::event(&ev))
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Implements `xbus_schema::EventSet` for an enum of event types. See the `xbus_schema`
/// crate docs.
#[proc_macro_derive(EventSet, attributes(event_set))]
pub fn derive_event_set(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    ast::SetInput::from_syn(&input)
        .and_then(|set| expand::event_set(&set))
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
