//! Gremlin query grammar: text -> typed AST ([`ast`]) and back.
#![forbid(unsafe_code)]

pub mod ast;
