//! Gremlin parser, structured: queries assembled from Gremlin tokens (step and predicate names in any
//! case, keywords, numbers, strings with escapes, punctuation, whitespace), so that most inputs get past
//! the lexer and exercise step arity, predicates and `Metadata`. Same oracle as `gremlin`: no panic,
//! and `parse(&q.to_string()) == Ok(q)`.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

const NAMES: &[&str] = &[
    "G",
    "V",
    "E",
    "Has",
    "HasKey",
    "HasNot",
    "HasEither",
    "Out",
    "In",
    "Both",
    "OutE",
    "InE",
    "BothE",
    "OutV",
    "InV",
    "BothV",
    "Dedup",
    "Count",
    "Range",
    "Limit",
    "Sort",
    "Values",
    "ValueMap",
    "Keys",
    "Sum",
    "ShortestPathTo",
    "SubGraph",
    "As",
    "Select",
    "Flows",
    "Context",
    "Metrics",
    "CaptureNode",
    "Metadata",
    "NE",
    "NEE",
    "LT",
    "GT",
    "LTE",
    "GTE",
    "INSIDE",
    "OUTSIDE",
    "BETWEEN",
    "WITHIN",
    "WITHOUT",
    "REGEX",
    "IPV4RANGE",
    "ASC",
    "DESC",
    "FOREVER",
    "NOW",
    "true",
    "false",
    "At",
    "Sockets",
    "Nodes",
    "Edges",
];

#[derive(Arbitrary, Debug)]
enum Case {
    AsIs,
    Lower,
    Upper,
}

#[derive(Arbitrary, Debug)]
enum Token {
    Dot,
    Open,
    Close,
    Comma,
    Space(u8),
    Name(u8, Case),
    Ident(String),
    Int(i64),
    Float(f64),
    Number(String),
    SingleQuoted(String),
    DoubleQuoted(String),
    Raw(char),
}

#[derive(Arbitrary, Debug)]
struct Query {
    head: Case,
    tokens: Vec<Token>,
}

fn cased(s: &str, case: &Case) -> String {
    match case {
        Case::AsIs => s.to_owned(),
        Case::Lower => s.to_ascii_lowercase(),
        Case::Upper => s.to_ascii_uppercase(),
    }
}

fn render(q: &Query) -> String {
    let mut out = cased("g", &q.head);
    for t in &q.tokens {
        match t {
            Token::Dot => out.push('.'),
            Token::Open => out.push('('),
            Token::Close => out.push(')'),
            Token::Comma => out.push(','),
            Token::Space(n) => out.push([' ', '\t', '\n', '\r'][usize::from(*n) % 4]),
            Token::Name(i, case) => {
                out.push_str(&cased(NAMES[usize::from(*i) % NAMES.len()], case))
            }
            Token::Ident(s) => {
                out.extend(s.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_'))
            }
            Token::Int(i) => out.push_str(&i.to_string()),
            Token::Float(x) => out.push_str(&format!("{x:?}")),
            Token::Number(s) => {
                out.push('1');
                out.extend(
                    s.chars()
                        .filter(|c| c.is_ascii_alphanumeric() || "._+-".contains(*c)),
                );
            }
            Token::SingleQuoted(s) => {
                out.push('\'');
                out.push_str(&s.replace('\'', "\\'"));
                out.push('\'');
            }
            Token::DoubleQuoted(s) => {
                out.push('"');
                out.push_str(s);
                out.push('"');
            }
            Token::Raw(c) => out.push(*c),
        }
    }
    out
}

fuzz_target!(|q: Query| {
    let text = render(&q);
    if let Ok(parsed) = topotap_grammar::parse(&text) {
        let printed = parsed.to_string();
        let again = topotap_grammar::parse(&printed)
            .unwrap_or_else(|e| panic!("{printed:?} (printed from {text:?}) fails: {e}"));
        assert_eq!(again, parsed, "{text:?} printed as {printed:?}");
        assert_eq!(again.to_string(), printed);
    }
});
