//! Gremlin query grammar: text -> typed AST ([`ast`]) and back.
//!
//! [`parse`] accepts Skydive's Gremlin dialect (skydive-behaviour.md §2.1–2.5) with its
//! leniencies (case-insensitive names, optional commas, `'` or `"` strings) and a few
//! deliberate extensions: escapes in strings, negative numbers, `\r` as whitespace and
//! trailing commas. Core-step arity and predicate arguments are checked at parse time;
//! extension steps are kept as [`ast::StepKind::Extension`] for later layers to validate.
//! Every AST prints back to canonical Gremlin through `Display`.
#![forbid(unsafe_code)]

pub mod ast;
mod parser;
mod print;
pub mod time;

pub use parser::{MAX_NESTING, MAX_QUERY_LEN};

/// Parses a Gremlin query. Never panics; queries longer than [`MAX_QUERY_LEN`] bytes or
/// nesting parameters deeper than [`MAX_NESTING`] levels are rejected before parsing.
///
/// ```
/// let q = topotap_grammar::parse("g.v().has('Name' \"eth0\").out()").unwrap();
/// assert_eq!(q.to_string(), "G.V().Has('Name', 'eth0').Out()");
///
/// let e = topotap_grammar::parse("G.V().Has('Name', x)").unwrap_err();
/// assert_eq!(e.to_string(), r#"line 1, column 19: expected ")" or a parameter, found "x""#);
/// ```
pub fn parse(text: &str) -> Result<ast::Query, ParseError> {
    parser::parse(text)
}

/// Why a query was rejected, and where.
///
/// `Display` is a single line, `line L, column C: <message>`, suitable as an HTTP 400 body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ParseError {
    /// Byte offset into the query text.
    pub position: usize,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    /// What was found and what was expected (no position prefix, no newline).
    pub message: String,
}

impl ParseError {
    /// An error at byte `position` of `text`, for later checks of a parsed query (such
    /// as unknown extension steps); line and column are computed from `text`.
    pub fn at(text: &str, position: usize, message: impl Into<String>) -> ParseError {
        let message: String = message.into();
        ParseError::new(text, position, message.replace(['\n', '\r'], " "))
    }

    pub(crate) fn new(text: &str, position: usize, message: impl Into<String>) -> ParseError {
        let (mut line, mut column) = (1, 1);
        for (i, c) in text.char_indices() {
            if i >= position {
                break;
            }
            if c == '\n' {
                line += 1;
                column = 1;
            } else {
                column += 1;
            }
        }
        ParseError {
            position,
            line,
            column,
            message: message.into(),
        }
    }
}
