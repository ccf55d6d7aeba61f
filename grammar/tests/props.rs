//! Property tests: no input panics the parser, every error is one line at a valid
//! position, and every AST the parser can produce round-trips through `Display`.

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use topotap_grammar::ast::{Keyword, Param, Predicate, Query, Span, Step, StepKind};
use topotap_grammar::{parse, MAX_NESTING};

/// Parses `text` and checks the contract that holds for any input.
fn check_any(text: &str) -> Result<(), TestCaseError> {
    match parse(text) {
        Ok(ast) => {
            let printed = ast.to_string();
            let again = parse(&printed)
                .map_err(|e| TestCaseError::fail(format!("reparse of {printed:?}: {e}")))?;
            prop_assert_eq!(&again, &ast);
            prop_assert_eq!(again.to_string(), printed);
        }
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(
                !msg.contains('\n') && !msg.contains('\r'),
                "multi-line: {:?}",
                msg
            );
            prop_assert!(e.position <= text.len());
            prop_assert!(text.is_char_boundary(e.position));
            prop_assert!(e.line >= 1 && e.column >= 1);
        }
    }
    Ok(())
}

const TOKENS: &[&str] = &[
    "G",
    "g",
    ".",
    "(",
    ")",
    ",",
    "'",
    "\"",
    "\\",
    "\\'",
    " ",
    "\n",
    "\r",
    "\t",
    "V",
    "E",
    "Has",
    "HasKey",
    "Out",
    "InV",
    "Sort",
    "Range",
    "Limit",
    "Dedup",
    "ShortestPathTo",
    "Flows",
    "WITHIN",
    "without",
    "NE",
    "INSIDE",
    "REGEX",
    "IPV4RANGE",
    "Metadata",
    "ASC",
    "DESC",
    "NOW",
    "true",
    "1",
    "-",
    "-3",
    "1.5",
    "1e3",
    "1.2.3",
    "10s",
    "'a'",
    "'10.0.0.0/8'",
    "\"b\"",
    "'^x'",
    "=",
    "[",
    "é",
    "日本",
    "\u{0}",
    "9999999999999999999999",
];

fn token_soup() -> impl Strategy<Value = String> {
    vec(prop::sample::select(TOKENS), 0..40).prop_map(|t| t.concat())
}

/// Soups that start like a real query, to get past `G` and into steps and params.
fn query_soup() -> impl Strategy<Value = String> {
    token_soup().prop_map(|s| format!("G.V().Has({s}"))
}

fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9_.@-]{0,8}",
        any::<String>(),
        "['\"\\\\\n\t ]{0,4}",
    ]
}

fn keyword() -> impl Strategy<Value = Keyword> {
    prop_oneof![
        Just(Keyword::Asc),
        Just(Keyword::Desc),
        Just(Keyword::Forever),
        Just(Keyword::Now),
    ]
}

fn regex_body() -> impl Strategy<Value = String> {
    "[a-z.*+?|()\\[\\]0-9\\\\]{0,10}".prop_filter("not anchored", |s| {
        let trailing_escapes = s.bytes().rev().take_while(|&b| b == b'\\').count();
        // a trailing odd run of `\` would escape the closing quote's own escape: keep it even
        !s.starts_with('^') && !s.ends_with('$') && trailing_escapes % 2 == 0
    })
}

fn cidr() -> impl Strategy<Value = String> {
    (any::<[u8; 4]>(), 0u8..=32).prop_map(|([a, b, c, d], n)| format!("{a}.{b}.{c}.{d}/{n}"))
}

fn leaf() -> impl Strategy<Value = Param> {
    prop_oneof![
        any::<i64>().prop_map(Param::Int),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(Param::Float),
        string().prop_map(Param::Str),
        any::<bool>().prop_map(Param::Bool),
        keyword().prop_map(Param::Keyword),
        regex_body().prop_map(|r| Param::Predicate(Predicate::Regex(r))),
        cidr().prop_map(|c| Param::Predicate(Predicate::Ipv4Range(c))),
    ]
}

fn param() -> impl Strategy<Value = Param> {
    leaf().prop_recursive(4, 32, 4, |inner| {
        let b = || inner.clone().prop_map(Box::new);
        prop_oneof![
            b().prop_map(|p| Param::Predicate(Predicate::Ne(p))),
            b().prop_map(|p| Param::Predicate(Predicate::Nee(p))),
            b().prop_map(|p| Param::Predicate(Predicate::Lt(p))),
            b().prop_map(|p| Param::Predicate(Predicate::Gt(p))),
            b().prop_map(|p| Param::Predicate(Predicate::Lte(p))),
            b().prop_map(|p| Param::Predicate(Predicate::Gte(p))),
            (b(), b()).prop_map(|(x, y)| Param::Predicate(Predicate::Inside(x, y))),
            (b(), b()).prop_map(|(x, y)| Param::Predicate(Predicate::Outside(x, y))),
            (b(), b()).prop_map(|(x, y)| Param::Predicate(Predicate::Between(x, y))),
            vec(inner.clone(), 0..4).prop_map(|v| Param::Predicate(Predicate::Within(v))),
            vec(inner.clone(), 0..4).prop_map(|v| Param::Predicate(Predicate::Without(v))),
            metadata(inner.clone()),
        ]
    })
}

fn metadata(value: impl Strategy<Value = Param>) -> impl Strategy<Value = Param> {
    vec((string(), value), 0..3).prop_map(Param::Metadata)
}

fn key_values(min_pairs: usize) -> impl Strategy<Value = Vec<Param>> {
    vec((string(), param()), min_pairs..3).prop_map(|kv| {
        kv.into_iter()
            .flat_map(|(k, v)| [Param::Str(k), v])
            .collect()
    })
}

fn strings(min: usize) -> impl Strategy<Value = Vec<Param>> {
    vec(string().prop_map(Param::Str), min..4)
}

fn one_string() -> impl Strategy<Value = Vec<Param>> {
    string().prop_map(|s| vec![Param::Str(s)])
}

fn extension_name() -> impl Strategy<Value = String> {
    "[A-Za-z][A-Za-z0-9_]{0,10}".prop_filter("not a core step", |n| {
        matches!(StepKind::from_ident(n), StepKind::Extension(_))
    })
}

fn step(kind: StepKind, params: Vec<Param>) -> Step {
    Step {
        kind,
        params,
        span: Span::default(),
    }
}

fn core_or_extension_step() -> impl Strategy<Value = Step> {
    use StepKind as K;
    let has_like = |k: StepKind| {
        prop_oneof![one_string(), key_values(1)].prop_map(move |p| step(k.clone(), p))
    };
    let kv = |k: StepKind| key_values(0).prop_map(move |p| step(k.clone(), p));
    let one = |k: StepKind| one_string().prop_map(move |p| step(k.clone(), p));
    let id = |k: StepKind| {
        option::of(string())
            .prop_map(move |s| step(k.clone(), s.into_iter().map(Param::Str).collect()))
    };
    let none = |k: StepKind| Just(step(k, Vec::new()));
    let sort = prop_oneof![
        Just(Vec::new()),
        one_string(),
        (
            prop_oneof![Just(Keyword::Asc), Just(Keyword::Desc)],
            string()
        )
            .prop_map(|(k, s)| vec![Param::Keyword(k), Param::Str(s)]),
    ]
    .prop_map(|p| step(K::Sort, p));
    let range = (0..=i64::MAX, 0..=i64::MAX)
        .prop_map(|(a, b)| step(K::Range, vec![Param::Int(a), Param::Int(b)]));
    let limit = (0..=i64::MAX).prop_map(|n| step(K::Limit, vec![Param::Int(n)]));
    let shortest = vec(metadata(param()), 1..=2).prop_map(|p| step(K::ShortestPathTo, p));
    let extension =
        (extension_name(), vec(param(), 0..4)).prop_map(|(n, p)| step(K::Extension(n), p));
    prop_oneof![
        none(K::G),
        id(K::V),
        id(K::E),
        has_like(K::Has),
        has_like(K::HasEither),
        one(K::HasKey),
        one(K::HasNot),
        kv(K::Out),
        kv(K::In),
        kv(K::Both),
        kv(K::OutE),
        kv(K::InE),
        kv(K::BothE),
        kv(K::OutV),
        kv(K::InV),
        kv(K::BothV),
        kv(K::SubGraph),
        strings(0).prop_map(|p| step(K::Dedup, p)),
        none(K::Count),
        none(K::Keys),
        range,
        limit,
        sort,
        one(K::Values),
        one(K::As),
        strings(1).prop_map(|p| step(K::ValueMap, p)),
        strings(1).prop_map(|p| step(K::Select, p)),
        option::of(string()).prop_map(|s| step(K::Sum, s.into_iter().map(Param::Str).collect())),
        shortest,
        extension,
    ]
}

fn query() -> impl Strategy<Value = Query> {
    vec(core_or_extension_step(), 0..6).prop_map(|steps| Query { steps })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_strings_never_panic(s in any::<String>()) {
        check_any(&s)?;
    }

    #[test]
    fn token_soup_never_panics(s in token_soup()) {
        check_any(&s)?;
    }

    #[test]
    fn query_soup_never_panics(s in query_soup()) {
        check_any(&s)?;
    }

    #[test]
    fn generated_asts_round_trip(q in query()) {
        let printed = q.to_string();
        let parsed = parse(&printed)
            .map_err(|e| TestCaseError::fail(format!("{printed:?}: {e}")))?;
        prop_assert_eq!(&parsed, &q);
        prop_assert_eq!(parsed.to_string(), printed);
    }

    #[test]
    fn nesting_is_bounded(depth in 0usize..200, metadata_every in 1usize..5) {
        let mut open = String::new();
        for level in 0..depth {
            open.push_str(if level % metadata_every == 0 { "Metadata('k', " } else { "WITHIN(" });
        }
        let text = format!("G.V().Foo({open}1{})", ")".repeat(depth));
        let result = parse(&text);
        if depth <= MAX_NESTING {
            prop_assert!(result.is_ok(), "{:?}", result);
        } else {
            let e = result.unwrap_err();
            prop_assert!(e.message.contains("nested deeper"), "{}", e);
        }
    }
}
