//! Invalid queries: each is rejected with a one-line message naming the problem, at the
//! right column.

use topotap_grammar::{parse, MAX_NESTING, MAX_QUERY_LEN};

/// (query, expected message substring, expected 1-based column)
#[rustfmt::skip]
const INVALID: &[(&str, &str, usize)] = &[
    // `G` first
    ("", "expected \"G\", found end of query", 1),
    ("   ", "expected \"G\", found end of query", 4),
    ("V()", "expected \"G\", found \"V\"", 1),
    ("x.V()", "expected \"G\", found \"x\"", 1),
    ("Gremlin.V()", "expected \"G\", found \"Gremlin\"", 1),
    ("G()", "expected \".\" or end of query, found \"(\"", 2),
    ("G.V() G.V()", "expected \".\" or end of query, found \"G\"", 7),
    ("G.V()x", "expected \".\" or end of query, found \"x\"", 6),
    // steps and parentheses
    ("G.V().", "expected a step name, found end of query", 7),
    ("G..V()", "expected a step name, found \".\"", 3),
    ("G.V().5()", "expected a step name, found \"5\"", 7),
    ("G.V.Out()", "expected \"(\" after V", 4),
    ("G.V().Out", "expected \"(\" after Out", 10),
    ("G.V(", "expected \")\" or a parameter, found end of query", 5),
    ("G.V().Has('a'", "expected \")\" or a parameter, found end of query", 14),
    ("G.V().Has('a', WITHIN('x')", "expected \")\" or a parameter, found end of query", 27),
    ("G.V().Has('a'))", "expected \".\" or end of query, found \")\"", 15),
    // illegal characters and bare identifiers
    ("G.V().Has('a' = 'b')", "expected \")\" or a parameter, found \"=\"", 15),
    ("G.V().Has('a', [1])", "expected \")\" or a parameter, found \"[\"", 16),
    ("G.V().Has('a', .5)", "expected \")\" or a parameter, found \".\"", 16),
    ("G.V().Has('a', -x)", "found \"-x\"", 16),
    ("G.V().Has('Name', x)", "expected \")\" or a parameter, found \"x\"", 19),
    ("G.V().Has('a', FOO)", "found \"FOO\"", 16),
    ("G.V().Has('a', 'b').\nOut(=)", "found \"=\"", 5),
    ("G.V()\n  .Has('a',\n  ;)", "found \";\"", 3),
    // predicates
    ("G.V().Has('a', FOO('b'))", "unknown predicate FOO", 16),
    ("G.V().Has('a', TRUE())", "unknown predicate TRUE", 16),
    ("G.V().Has('a', Out())", "unknown predicate Out", 16),
    ("G.V().Has('a', NE)", "expected \"(\" after NE", 18),
    ("G.V().Has('a', NE(1, 2))", "NE takes exactly one parameter, found 2 parameters", 16),
    ("G.V().Has('a', NEE())", "NEE takes exactly one parameter, found no parameters", 16),
    ("G.V().Has('a', lt())", "LT takes exactly one parameter", 16),
    ("G.V().Has('a', GT(1,2))", "GT takes exactly one parameter", 16),
    ("G.V().Has('a', LTE())", "LTE takes exactly one parameter", 16),
    ("G.V().Has('a', GTE(1 2))", "GTE takes exactly one parameter", 16),
    ("G.V().Has('a', INSIDE(1))", "INSIDE takes exactly two parameters, found 1 parameter", 16),
    ("G.V().Has('a', OUTSIDE())", "OUTSIDE takes exactly two parameters", 16),
    ("G.V().Has('a', BETWEEN(1,2,3))", "BETWEEN takes exactly two parameters, found 3 parameters", 16),
    ("G.V().Has('a', REGEX(1))", "REGEX takes one string parameter, found integer 1", 16),
    ("G.V().Has('a', REGEX('a', 'b'))", "REGEX takes exactly one string parameter, found 2", 16),
    ("G.V().Has('a', REGEX('^eth'))", "regex is anchored by default: remove ^ and $", 16),
    ("G.V().Has('a', REGEX('eth$'))", "regex is anchored by default", 16),
    ("G.V().Has('a', IPV4RANGE('10.0.0.0'))", "IPV4RANGE takes an IPv4 CIDR", 16),
    ("G.V().Has('a', IPV4RANGE('10.0.0.0/40'))", "found \"10.0.0.0/40\"", 16),
    ("G.V().Has('a', IPV4RANGE('300.0.0.0/8'))", "IPV4RANGE takes an IPv4 CIDR", 16),
    ("G.V().Has('a', IPV4RANGE(10))", "IPV4RANGE takes one string parameter", 16),
    ("G.V().Has('a', WITHIN(NE(1,2)))", "NE takes exactly one parameter", 23),
    // Metadata
    ("G.V().ShortestPathTo(Metadata('a'))", "Metadata params should be a list of key,value pairs, found 1 parameter", 22),
    ("G.V().ShortestPathTo(Metadata(1, 2))", "Metadata keys should be of string type, found integer 1 at parameter 1", 22),
    ("G.V().ShortestPathTo(Metadata)", "expected \"(\" after Metadata", 30),
    // strings
    ("G.V().Has('abc", "unterminated string", 11),
    ("G.V().Has(\"abc')", "unterminated string", 11),
    ("G.V().Has('abc\\')", "unterminated string", 11),
    ("G.V().Has('a\\q', 'b')", "invalid escape \"\\\\q\"", 13),
    // numbers
    ("G.V().Has('a', 1.2.3)", "invalid number \"1.2.3\"", 16),
    ("G.V().Limit(10s)", "invalid number \"10s\"", 13),
    ("G.V().Has('a', 1e)", "invalid number \"1e\"", 16),
    ("G.V().Has('a', 1.)", "invalid number \"1.\"", 16),
    ("G.V().Has('a', 99999999999999999999)", "integer 99999999999999999999 out of range", 16),
    ("G.V().Has('a', -9223372036854775809)", "out of range", 16),
    ("G.V().Has('a', 1e999)", "number 1e999 out of range", 16),
    // core step arity and types
    ("G.G(1)", "G takes no parameters, found 1 parameter", 3),
    ("G.V('a', 'b')", "V takes no parameters or one string ID, found 2 parameters", 3),
    ("G.V(1)", "V takes no parameters or one string ID, found integer 1", 3),
    ("G.E(NE('x'))", "E takes no parameters or one string ID, found predicate NE", 3),
    ("G.V().HasKey()", "HasKey takes exactly one string parameter, found no parameters", 7),
    ("G.V().HasKey(1)", "HasKey takes exactly one string parameter, found integer 1", 7),
    ("G.V().HasNot('a','b')", "HasNot takes exactly one string parameter, found 2 parameters", 7),
    ("G.V().Has()", "Has takes at least one parameter", 7),
    ("G.V().Has(1)", "Has takes a string key, found integer 1", 7),
    ("G.V().Has('a','b','c')", "Has params should be a list of key,value pairs, found 3 parameters", 7),
    ("G.V().Has(1,'b')", "Has keys should be of string type, found integer 1 at parameter 1", 7),
    ("G.V().Has('a', 1, true, 2)", "Has keys should be of string type, found boolean true at parameter 3", 7),
    ("G.V().HasEither()", "HasEither takes at least one parameter", 7),
    ("G.V().HasEither('a', 1, 'b')", "HasEither params should be a list of key,value pairs", 7),
    ("G.V().Out('a')", "Out params should be a list of key,value pairs, found 1 parameter", 7),
    ("G.V().Out(1, 'a')", "Out keys should be of string type", 7),
    ("G.V().In('a')", "In params should be a list of key,value pairs", 7),
    ("G.V().Both('a', 'b', 'c')", "Both params should be a list", 7),
    ("G.V().OutE(1, 2)", "OutE keys should be of string type", 7),
    ("G.V().InE('a')", "InE params should be a list", 7),
    ("G.V().BothE('a')", "BothE params should be a list", 7),
    ("G.E().OutV('a')", "OutV params should be a list", 7),
    ("G.E().InV(ASC, 'a')", "InV keys should be of string type, found keyword ASC", 7),
    ("G.E().BothV('a')", "BothV params should be a list", 7),
    ("G.V().SubGraph('a')", "SubGraph params should be a list of key,value pairs, found 1 parameter", 7),
    ("G.V().ShortestPathTo()", "ShortestPathTo takes one or two Metadata(...) parameters, found no parameters", 7),
    ("G.V().ShortestPathTo('a')", "ShortestPathTo takes one or two Metadata(...) parameters, found a string", 7),
    ("G.V().ShortestPathTo(Metadata('a',1), Metadata('b',2), Metadata('c',3))", "found 3 parameters", 7),
    ("G.V().Count(1)", "Count takes no parameters, found 1 parameter", 7),
    ("G.V().Keys('a')", "Keys takes no parameters, found 1 parameter", 7),
    ("G.V().Sort(1)", "Sort takes no parameters, a string key, or ASC|DESC and a string key, found (integer 1)", 7),
    ("G.V().Sort(ASC)", "found (keyword ASC)", 7),
    ("G.V().Sort('a', ASC)", "found (a string, keyword ASC)", 7),
    ("G.V().Sort(NOW, 'a')", "found (keyword NOW, a string)", 7),
    ("G.V().Sort(ASC, 'a', 'b')", "Sort takes no parameters", 7),
    ("G.V().Range(1)", "Range takes exactly two integer parameters, found (integer 1)", 7),
    ("G.V().Range('a', 2)", "Range takes exactly two integer parameters, found (a string, integer 2)", 7),
    ("G.V().Range(-1, 2)", "Range bounds must not be negative", 7),
    ("G.V().Limit()", "Limit takes exactly one integer parameter, found no parameters", 7),
    ("G.V().Limit(1.5)", "Limit takes exactly one integer parameter, found (float 1.5)", 7),
    ("G.V().Limit(-1)", "Limit must not be negative", 7),
    ("G.V().Values()", "Values takes exactly one string parameter, found no parameters", 7),
    ("G.V().Values(1)", "Values takes exactly one string parameter, found integer 1", 7),
    ("G.V().ValueMap()", "ValueMap takes one or more string parameters, found no parameters", 7),
    ("G.V().ValueMap('a', 1)", "found integer 1 at parameter 2", 7),
    ("G.V().Sum('a','b')", "Sum takes no parameters or one string key, found 2 parameters", 7),
    ("G.V().Sum(1)", "Sum takes no parameters or one string key, found integer 1", 7),
    ("G.V().As()", "As takes exactly one string parameter, found no parameters", 7),
    ("G.V().As('a', 'b')", "As takes exactly one string parameter, found 2 parameters", 7),
    ("G.V().Select()", "Select takes one or more string parameters, found no parameters", 7),
    ("G.V().Select(1)", "Select takes one or more string parameters, found integer 1", 7),
    ("G.V().Dedup(1)", "Dedup takes only string keys, found integer 1 at parameter 1", 7),
    ("G.V().Dedup('a', WITHIN())", "found predicate WITHIN at parameter 2", 7),
    // errors after a newline report the line's column
    ("G.V()\n.HasKey()", "HasKey takes exactly one string parameter", 2),
];

#[test]
fn invalid_queries() {
    for (query, substring, column) in INVALID {
        let err = match parse(query) {
            Ok(ast) => panic!("{query:?} parsed as {ast}"),
            Err(e) => e,
        };
        let text = err.to_string();
        assert!(
            text.contains(substring),
            "{query:?}: {text:?} lacks {substring:?}"
        );
        assert_eq!(err.column, *column, "column of {query:?}: {text}");
        assert!(
            !text.contains('\n'),
            "{query:?}: multi-line message {text:?}"
        );
        assert!(
            text.starts_with(&format!("line {}, column {}: ", err.line, err.column)),
            "{text}"
        );
        assert!(
            err.position <= query.len(),
            "{query:?}: position {}",
            err.position
        );
    }
}

#[test]
fn line_and_position() {
    let err = parse("G.V()\n  .Has('a',\n  ;)").unwrap_err();
    assert_eq!((err.line, err.column, err.position), (3, 3, 20));
    let err = parse("G.V().Has('é', x)").unwrap_err();
    // column counts characters, position counts bytes
    assert_eq!((err.column, err.position), (16, 16));
}

#[test]
fn unknown_predicate_message_is_exact() {
    let err = parse("G.V().Has('a', FOO(1))").unwrap_err();
    assert_eq!(err.to_string(), "line 1, column 16: unknown predicate FOO");
    let err = parse("G.V().Has('Name', x)").unwrap_err();
    assert_eq!(
        err.to_string(),
        "line 1, column 19: expected \")\" or a parameter, found \"x\""
    );
}

#[test]
fn found_token_is_escaped_on_one_line() {
    let err = parse("G.V()\n\u{7}").unwrap_err();
    assert_eq!(
        err.message,
        "expected \".\" or end of query, found \"\\u{7}\""
    );
    let long = format!("G.V() '{}'", "x".repeat(100));
    let err = parse(&long).unwrap_err();
    assert!(
        err.message.ends_with("...") && err.message.len() < 100,
        "{}",
        err.message
    );
}

#[test]
fn too_long_query() {
    let mut q = String::from("G");
    while q.len() <= MAX_QUERY_LEN {
        q.push_str(".V()");
    }
    let err = parse(&q).unwrap_err();
    assert!(
        err.message.contains("longer than the 65536 bytes allowed"),
        "{err}"
    );
    assert_eq!(err.position, 0);
    // just under the limit is fine
    let ok = format!("G{}", ".V()".repeat((MAX_QUERY_LEN - 1) / 4));
    assert!(ok.len() <= MAX_QUERY_LEN);
    assert_eq!(parse(&ok).unwrap().steps.len(), (MAX_QUERY_LEN - 1) / 4);
}

#[test]
fn nesting_limit() {
    let nest = |n: usize| format!("G.V().Has('a', {}1{})", "WITHIN(".repeat(n), ")".repeat(n));
    assert!(parse(&nest(MAX_NESTING)).is_ok());
    let err = parse(&nest(MAX_NESTING + 1)).unwrap_err();
    assert!(
        err.message.contains("nested deeper than 32 levels"),
        "{err}"
    );
    // the offending parenthesis: `G.V().Has('a', ` + 32 * `WITHIN(` + `WITHIN`
    assert_eq!(err.position, 15 + 7 * MAX_NESTING + 6);
    let meta = |n: usize| {
        format!(
            "G.V().ShortestPathTo({}1{})",
            "Metadata('k', ".repeat(n),
            ")".repeat(n)
        )
    };
    assert!(parse(&meta(MAX_NESTING)).is_ok());
    assert!(parse(&meta(MAX_NESTING + 1))
        .unwrap_err()
        .message
        .contains("nested deeper"));
}

#[test]
fn pathological_inputs_are_rejected_cleanly() {
    let deep_within = format!(
        "G.V().Has('a', {}1{})",
        "WITHIN(".repeat(10_000),
        ")".repeat(10_000)
    );
    // 70 KB: over the length limit, which is checked first
    assert!(parse(&deep_within)
        .unwrap_err()
        .message
        .contains("longer than"));
    let deep_within = format!("G.V().Has('a', {}1", "WITHIN(".repeat(9_000));
    assert!(parse(&deep_within)
        .unwrap_err()
        .message
        .contains("nested deeper"));
    let parens = format!("G.V{}", "(".repeat(100_000));
    let err = parse(&parens).unwrap_err();
    // 100_000 bytes is over the length limit before anything else
    assert!(err.message.contains("longer than"), "{err}");
    let parens = format!("G.V{}", "(".repeat(60_000));
    assert!(parse(&parens)
        .unwrap_err()
        .message
        .contains("nested deeper"));
    let commas = format!("G.V({})", ",".repeat(60_000));
    assert_eq!(parse(&commas).unwrap().steps[0].params.len(), 0);
    let dots = format!("G{}", ".".repeat(60_000));
    assert!(parse(&dots).is_err());
    let quotes = "'".repeat(60_001);
    assert!(parse(&quotes).is_err());
}
