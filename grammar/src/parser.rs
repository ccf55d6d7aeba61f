//! Text -> AST: a pre-scan bounding size and nesting, the pest grammar (`gremlin.pest`),
//! then classification of names and per-step checks (skydive-behaviour.md §2.2).

use pest::error::{ErrorVariant, InputLocation};
use pest::iterators::Pair;
use pest::Parser as _;
use pest_derive::Parser;

use crate::ast::{Keyword, Param, Predicate, Query, Span, Step, StepKind};
use crate::ParseError;

/// Longest accepted query, in bytes.
pub const MAX_QUERY_LEN: usize = 64 * 1024;
/// Deepest accepted parameter nesting (`WITHIN(WITHIN(...))`, `Metadata('k', Metadata(...))`).
pub const MAX_NESTING: usize = 32;

#[derive(Parser)]
#[grammar = "gremlin.pest"]
struct GremlinParser;

pub(crate) fn parse(text: &str) -> Result<Query, ParseError> {
    if text.len() > MAX_QUERY_LEN {
        return Err(ParseError::new(
            text,
            0,
            format!(
                "query is {} bytes long, longer than the {MAX_QUERY_LEN} bytes allowed",
                text.len()
            ),
        ));
    }
    let unterminated = prescan(text)?;
    let mut pairs =
        GremlinParser::parse(Rule::query, text).map_err(|e| from_pest(text, &e, unterminated))?;
    let Some(query) = pairs.next() else {
        return Err(ParseError::new(text, 0, "empty parse"));
    };
    let mut steps = Vec::new();
    for pair in query.into_inner() {
        if pair.as_rule() == Rule::step {
            steps.push(build_step(text, pair)?);
        }
    }
    Ok(Query { steps })
}

/// Bounds parenthesis nesting before the (recursive) grammar runs, so that hostile input
/// cannot exhaust the stack, and finds the first unterminated string (pest alone would
/// only report "expected a parameter" at its opening quote). Works on bytes: quotes,
/// parentheses and `\` are ASCII and never part of a multi-byte UTF-8 sequence.
fn prescan(text: &str) -> Result<Option<usize>, ParseError> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            quote @ (b'\'' | b'"') => {
                let start = i;
                i += 1;
                loop {
                    match bytes.get(i) {
                        None => return Ok(Some(start)),
                        Some(b'\\') => i += 2,
                        Some(&c) if c == quote => break,
                        Some(_) => i += 1,
                    }
                }
            }
            b'(' => {
                depth += 1;
                // One level for the step's own parentheses.
                if depth > MAX_NESTING + 1 {
                    return Err(ParseError::new(
                        text,
                        i,
                        format!("parameters nested deeper than {MAX_NESTING} levels"),
                    ));
                }
            }
            b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(None)
}

/// Turns pest's "expected one of these rules at the furthest position" into one line.
fn from_pest(text: &str, e: &pest::error::Error<Rule>, unterminated: Option<usize>) -> ParseError {
    let pos = match e.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((p, _)) => p,
    };
    if let Some(start) = unterminated {
        if pos >= start {
            return ParseError::new(text, start, "unterminated string");
        }
    }
    let found = describe_found(text, pos);
    let message = match &e.variant {
        ErrorVariant::ParsingError { positives, .. } => {
            let mut expected: Vec<(u8, &str)> =
                positives.iter().map(|r| describe_rule(*r)).collect();
            expected.sort_unstable();
            expected.dedup();
            let names: Vec<&str> = expected.into_iter().map(|(_, name)| name).collect();
            match names.as_slice() {
                [] => format!("unexpected {found}"),
                [one] => format!("expected {one}, found {found}"),
                [init @ .., last] => {
                    format!("expected {} or {last}, found {found}", init.join(", "))
                }
            }
        }
        ErrorVariant::CustomError { message } => message.replace('\n', " "),
    };
    ParseError::new(text, pos, message)
}

/// Display order and wording of an expected rule.
fn describe_rule(rule: Rule) -> (u8, &'static str) {
    match rule {
        Rule::rparen => (0, "\")\""),
        Rule::args => (1, "\"(\""),
        Rule::step => (2, "\".\""),
        Rule::param | Rule::call | Rule::word | Rule::number | Rule::string => (3, "a parameter"),
        Rule::step_name => (4, "a step name"),
        Rule::head => (5, "\"G\""),
        Rule::EOI => (6, "end of query"),
        _ => (7, "valid Gremlin"),
    }
}

/// The token at `pos`, quoted and escaped so the message stays on one line.
fn describe_found(text: &str, pos: usize) -> String {
    let Some(rest) = text.get(pos..) else {
        return "end of query".to_owned();
    };
    let mut chars = rest.char_indices();
    let Some((_, first)) = chars.next() else {
        return "end of query".to_owned();
    };
    let run = |also_dot: bool| {
        rest.char_indices()
            .skip(1)
            .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '_' || (also_dot && c == '.')))
            .map_or(rest.len(), |(i, _)| i)
    };
    let end = if first.is_ascii_alphabetic() {
        run(false)
    } else if first.is_ascii_digit() || first == '-' {
        run(true)
    } else if first == '\'' || first == '"' {
        let mut escaped = false;
        chars
            .find(|&(_, c)| {
                let close = !escaped && c == first;
                escaped = !escaped && c == '\\';
                close
            })
            .map_or(rest.len(), |(i, c)| i + c.len_utf8())
    } else {
        first.len_utf8()
    };
    let token = &rest[..end];
    const MAX: usize = 32;
    match token.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{:?}...", &token[..cut]),
        None => format!("{token:?}"),
    }
}

fn err_at(text: &str, pos: usize, message: impl Into<String>) -> ParseError {
    ParseError::new(text, pos, message)
}

fn build_step(text: &str, pair: Pair<'_, Rule>) -> Result<Step, ParseError> {
    let end = pair.as_span().end();
    let mut inner = pair.into_inner();
    let Some(name) = inner.next() else {
        return Err(err_at(text, end, "expected a step name"));
    };
    let start = name.as_span().start();
    let kind = StepKind::from_ident(name.as_str());
    let params = match inner.next() {
        Some(args) => build_params(text, args)?,
        None if kind == StepKind::G => Vec::new(),
        None => {
            return Err(err_at(
                text,
                name.as_span().end(),
                format!("expected \"(\" after {}", name.as_str()),
            ))
        }
    };
    check_step(&kind, &params).map_err(|m| err_at(text, start, m))?;
    Ok(Step {
        kind,
        params,
        span: Span { start, end },
    })
}

fn build_params(text: &str, args: Pair<'_, Rule>) -> Result<Vec<Param>, ParseError> {
    let mut params = Vec::new();
    for pair in args.into_inner() {
        if pair.as_rule() == Rule::param {
            params.push(build_param(text, pair)?);
        }
    }
    Ok(params)
}

fn build_param(text: &str, pair: Pair<'_, Rule>) -> Result<Param, ParseError> {
    let pos = pair.as_span().start();
    let Some(inner) = pair.into_inner().next() else {
        return Err(err_at(text, pos, "expected a parameter"));
    };
    match inner.as_rule() {
        Rule::string => unescape(text, inner).map(Param::Str),
        Rule::number => number(text, inner),
        _ => build_call(text, inner),
    }
}

/// Decodes the body of a string literal: `\'`, `\"`, `\\`, `\n`, `\t`.
fn unescape(text: &str, string: Pair<'_, Rule>) -> Result<String, ParseError> {
    let Some(body) = string.into_inner().next() else {
        return Ok(String::new());
    };
    let raw = body.as_str();
    let base = body.as_span().start();
    if !raw.contains('\\') {
        return Ok(raw.to_owned());
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.char_indices();
    while let Some((i, c)) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next().map(|(_, c)| c) {
            Some('\'') => out.push('\''),
            Some('"') => out.push('"'),
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(other) => {
                return Err(err_at(
                    text,
                    base + i,
                    format!(
                        "invalid escape {:?} in string (allowed: \\' \\\" \\\\ \\n \\t)",
                        format!("\\{other}")
                    ),
                ))
            }
            None => return Err(err_at(text, base + i, "unterminated string")),
        }
    }
    Ok(out)
}

/// Integers are `-?[0-9]+` (i64); floats need a fraction and/or an exponent.
fn number(text: &str, pair: Pair<'_, Rule>) -> Result<Param, ParseError> {
    let s = pair.as_str();
    let pos = pair.as_span().start();
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<i64>()
            .map(Param::Int)
            .map_err(|_| err_at(text, pos, format!("integer {s} out of range")));
    }
    if is_float_syntax(digits) {
        if let Ok(x) = s.parse::<f64>() {
            if x.is_finite() {
                return Ok(Param::Float(x));
            }
        }
        return Err(err_at(text, pos, format!("number {s} out of range")));
    }
    Err(err_at(text, pos, format!("invalid number {s:?}")))
}

/// `[0-9]+ ("." [0-9]+)? ([eE] [+-]? [0-9]+)?` with at least a fraction or an exponent.
fn is_float_syntax(s: &str) -> bool {
    fn digits(s: &str) -> (&str, &str) {
        let n = s.bytes().take_while(u8::is_ascii_digit).count();
        s.split_at(n)
    }
    let (int, mut rest) = digits(s);
    if int.is_empty() {
        return false;
    }
    let mut float = false;
    if let Some(after) = rest.strip_prefix('.') {
        let (frac, after) = digits(after);
        if frac.is_empty() {
            return false;
        }
        rest = after;
        float = true;
    }
    if let Some(after) = rest.strip_prefix(['e', 'E']) {
        let after = after.strip_prefix(['+', '-']).unwrap_or(after);
        let (exp, after) = digits(after);
        if exp.is_empty() {
            return false;
        }
        rest = after;
        float = true;
    }
    float && rest.is_empty()
}

/// A name in parameter position: keyword, predicate or `Metadata(...)`.
fn build_call(text: &str, pair: Pair<'_, Rule>) -> Result<Param, ParseError> {
    let pos = pair.as_span().start();
    let mut inner = pair.into_inner();
    let Some(word) = inner.next() else {
        return Err(err_at(text, pos, "expected a parameter"));
    };
    let name = word.as_str();
    let upper = name.to_ascii_uppercase();
    let Some(args) = inner.next() else {
        return match upper.as_str() {
            "TRUE" => Ok(Param::Bool(true)),
            "FALSE" => Ok(Param::Bool(false)),
            "ASC" => Ok(Param::Keyword(Keyword::Asc)),
            "DESC" => Ok(Param::Keyword(Keyword::Desc)),
            "FOREVER" => Ok(Param::Keyword(Keyword::Forever)),
            "NOW" => Ok(Param::Keyword(Keyword::Now)),
            _ if is_callable(&upper) => Err(err_at(
                text,
                word.as_span().end(),
                format!("expected \"(\" after {name}"),
            )),
            _ => Err(err_at(
                text,
                pos,
                format!("expected \")\" or a parameter, found {name:?}"),
            )),
        };
    };
    let params = build_params(text, args)?;
    let err = |m: String| err_at(text, pos, m);
    let one = |mut p: Vec<Param>| -> Result<Box<Param>, ParseError> {
        match p.len() {
            1 => Ok(Box::new(p.remove(0))),
            n => Err(err(format!(
                "{upper} takes exactly one parameter, found {}",
                plural(n)
            ))),
        }
    };
    let two = |mut p: Vec<Param>| -> Result<(Box<Param>, Box<Param>), ParseError> {
        match p.len() {
            2 => {
                let b = p.remove(1);
                Ok((Box::new(p.remove(0)), Box::new(b)))
            }
            n => Err(err(format!(
                "{upper} takes exactly two parameters, found {}",
                plural(n)
            ))),
        }
    };
    let string = |p: Vec<Param>| -> Result<String, ParseError> {
        match <[Param; 1]>::try_from(p) {
            Ok([Param::Str(s)]) => Ok(s),
            Ok([other]) => Err(err(format!(
                "{upper} takes one string parameter, found {}",
                describe_param(&other)
            ))),
            Err(p) => Err(err(format!(
                "{upper} takes exactly one string parameter, found {}",
                plural(p.len())
            ))),
        }
    };
    let predicate = match upper.as_str() {
        "NE" => Predicate::Ne(one(params)?),
        "NEE" => Predicate::Nee(one(params)?),
        "LT" => Predicate::Lt(one(params)?),
        "GT" => Predicate::Gt(one(params)?),
        "LTE" => Predicate::Lte(one(params)?),
        "GTE" => Predicate::Gte(one(params)?),
        "INSIDE" => {
            let (a, b) = two(params)?;
            Predicate::Inside(a, b)
        }
        "OUTSIDE" => {
            let (a, b) = two(params)?;
            Predicate::Outside(a, b)
        }
        "BETWEEN" => {
            let (a, b) = two(params)?;
            Predicate::Between(a, b)
        }
        "WITHIN" => Predicate::Within(params),
        "WITHOUT" => Predicate::Without(params),
        "REGEX" => {
            let re = string(params)?;
            if re.starts_with('^') || ends_with_unescaped_dollar(&re) {
                return Err(err(
                    "regex is anchored by default: remove ^ and $".to_owned()
                ));
            }
            Predicate::Regex(re)
        }
        "IPV4RANGE" => {
            let cidr = string(params)?;
            if !is_ipv4_cidr(&cidr) {
                return Err(err(format!(
                    "IPV4RANGE takes an IPv4 CIDR like '10.0.0.0/8', found {cidr:?}"
                )));
            }
            Predicate::Ipv4Range(cidr)
        }
        "METADATA" => {
            return key_values("Metadata", params)
                .map(Param::Metadata)
                .map_err(err)
        }
        _ => return Err(err(format!("unknown predicate {name}"))),
    };
    Ok(Param::Predicate(predicate))
}

fn is_callable(upper: &str) -> bool {
    matches!(
        upper,
        "NE" | "NEE"
            | "LT"
            | "GT"
            | "LTE"
            | "GTE"
            | "INSIDE"
            | "OUTSIDE"
            | "BETWEEN"
            | "WITHIN"
            | "WITHOUT"
            | "REGEX"
            | "IPV4RANGE"
            | "METADATA"
    )
}

fn ends_with_unescaped_dollar(re: &str) -> bool {
    let Some(body) = re.strip_suffix('$') else {
        return false;
    };
    let backslashes = body.bytes().rev().take_while(|&b| b == b'\\').count();
    backslashes % 2 == 0
}

/// `a.b.c.d/n` with octets 0..=255 and n 0..=32.
fn is_ipv4_cidr(s: &str) -> bool {
    let Some((addr, prefix)) = s.split_once('/') else {
        return false;
    };
    let prefix_ok = !prefix.is_empty()
        && prefix.len() <= 2
        && prefix.bytes().all(|b| b.is_ascii_digit())
        && prefix.parse::<u8>().is_ok_and(|n| n <= 32);
    prefix_ok && addr.parse::<std::net::Ipv4Addr>().is_ok()
}

fn describe_param(p: &Param) -> String {
    match p {
        Param::Int(i) => format!("integer {i}"),
        Param::Float(x) => format!("float {x:?}"),
        Param::Str(_) => "a string".to_owned(),
        Param::Bool(b) => format!("boolean {b}"),
        Param::Keyword(k) => format!("keyword {}", k.name()),
        Param::Predicate(p) => format!("predicate {}", p.name()),
        Param::Metadata(_) => "Metadata(...)".to_owned(),
    }
}

fn plural(n: usize) -> String {
    match n {
        0 => "no parameters".to_owned(),
        1 => "1 parameter".to_owned(),
        n => format!("{n} parameters"),
    }
}

/// `k1, v1, k2, v2, ...` with string keys.
fn key_values(name: &str, params: Vec<Param>) -> Result<Vec<(String, Param)>, String> {
    if params.len() % 2 != 0 {
        return Err(format!(
            "{name} params should be a list of key,value pairs, found {}",
            plural(params.len())
        ));
    }
    let mut pairs = Vec::with_capacity(params.len() / 2);
    let mut it = params.into_iter().enumerate();
    while let (Some((i, k)), Some((_, v))) = (it.next(), it.next()) {
        match k {
            Param::Str(k) => pairs.push((k, v)),
            other => {
                return Err(format!(
                    "{name} keys should be of string type, found {} at parameter {}",
                    describe_param(&other),
                    i + 1
                ))
            }
        }
    }
    Ok(pairs)
}

fn check_key_values(name: &str, params: &[Param]) -> Result<(), String> {
    if params.len() % 2 != 0 {
        return Err(format!(
            "{name} params should be a list of key,value pairs, found {}",
            plural(params.len())
        ));
    }
    for (i, k) in params.iter().enumerate().step_by(2) {
        if !matches!(k, Param::Str(_)) {
            return Err(format!(
                "{name} keys should be of string type, found {} at parameter {}",
                describe_param(k),
                i + 1
            ));
        }
    }
    Ok(())
}

fn check_strings(name: &str, what: &str, params: &[Param]) -> Result<(), String> {
    match params.iter().position(|p| !matches!(p, Param::Str(_))) {
        None => Ok(()),
        Some(i) => Err(format!(
            "{name} takes {what}, found {} at parameter {}",
            describe_param(&params[i]),
            i + 1
        )),
    }
}

fn check_count(name: &str, what: &str, params: &[Param], ok: bool) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name} takes {what}, found {}",
            plural(params.len())
        ))
    }
}

/// Per-step arity and types (skydive-behaviour.md §2.2, §2.5). Extension steps pass.
fn check_step(kind: &StepKind, p: &[Param]) -> Result<(), String> {
    use StepKind as K;
    let name = kind.name();
    match kind {
        K::G | K::Count | K::Keys => check_count(name, "no parameters", p, p.is_empty()),
        K::V | K::E => {
            let what = "no parameters or one string ID";
            check_count(name, what, p, p.len() <= 1)?;
            check_strings(name, what, p)
        }
        K::HasKey | K::HasNot | K::Values | K::As => {
            let what = "exactly one string parameter";
            check_count(name, what, p, p.len() == 1)?;
            check_strings(name, what, p)
        }
        K::Sum => {
            let what = "no parameters or one string key";
            check_count(name, what, p, p.len() <= 1)?;
            check_strings(name, what, p)
        }
        K::ValueMap | K::Select => {
            let what = "one or more string parameters";
            check_count(name, what, p, !p.is_empty())?;
            check_strings(name, what, p)
        }
        K::Dedup => check_strings(name, "only string keys", p),
        K::Has | K::HasEither => match p {
            [] => Err(format!("{name} takes at least one parameter")),
            [_] => check_strings(name, "a string key", p),
            _ => check_key_values(name, p),
        },
        K::Out
        | K::In
        | K::Both
        | K::OutE
        | K::InE
        | K::BothE
        | K::OutV
        | K::InV
        | K::BothV
        | K::SubGraph => check_key_values(name, p),
        K::ShortestPathTo => {
            let what = "one or two Metadata(...) parameters";
            check_count(name, what, p, (1..=2).contains(&p.len()))?;
            match p.iter().position(|x| !matches!(x, Param::Metadata(_))) {
                None => Ok(()),
                Some(i) => Err(format!(
                    "{name} takes {what}, found {} at parameter {}",
                    describe_param(&p[i]),
                    i + 1
                )),
            }
        }
        K::Sort => match p {
            []
            | [Param::Str(_)]
            | [Param::Keyword(Keyword::Asc | Keyword::Desc), Param::Str(_)] => Ok(()),
            _ => Err(format!(
                "Sort takes no parameters, a string key, or ASC|DESC and a string key, found {}",
                describe_params(p)
            )),
        },
        K::Range => match p {
            [Param::Int(a), Param::Int(b)] if *a >= 0 && *b >= 0 => Ok(()),
            [Param::Int(_), Param::Int(_)] => Err("Range bounds must not be negative".to_owned()),
            _ => Err(format!(
                "Range takes exactly two integer parameters, found {}",
                describe_params(p)
            )),
        },
        K::Limit => match p {
            [Param::Int(n)] if *n >= 0 => Ok(()),
            [Param::Int(_)] => Err("Limit must not be negative".to_owned()),
            _ => Err(format!(
                "Limit takes exactly one integer parameter, found {}",
                describe_params(p)
            )),
        },
        K::Context => check_context(p),
        K::Extension(_) => Ok(()),
    }
}

/// `Context(t[, d])`: a time point (NOW, a string or integer seconds) and an optional
/// window (a duration string, integer seconds or FOREVER), each in a form
/// [`crate::time`] accepts.
fn check_context(p: &[Param]) -> Result<(), String> {
    use crate::time::{self, ACCEPTED_TIMES, ACCEPTED_WINDOWS};
    let (t, d) = match p {
        [t] => (t, None),
        [t, d] => (t, Some(d)),
        _ => {
            return Err(format!(
                "Context takes a time and an optional window, found {}",
                describe_params(p)
            ))
        }
    };
    match t {
        Param::Keyword(Keyword::Now) => {}
        Param::Int(n) => {
            time::time_from_int(*n).map_err(|e| e.0)?;
        }
        Param::Str(s) => {
            time::parse_time(s).map_err(|e| e.0)?;
        }
        other => {
            return Err(format!(
                "invalid time {}: {ACCEPTED_TIMES}",
                describe_param(other)
            ))
        }
    }
    match d {
        None | Some(Param::Keyword(Keyword::Forever)) => Ok(()),
        Some(Param::Int(n)) if *n >= 0 => Ok(()),
        Some(Param::Str(s)) => time::parse_window(s).map(|_| ()).map_err(|e| e.0),
        Some(other) => Err(format!(
            "invalid window {}: {ACCEPTED_WINDOWS}",
            describe_param(other)
        )),
    }
}

fn describe_params(p: &[Param]) -> String {
    if p.is_empty() {
        return "no parameters".to_owned();
    }
    let kinds: Vec<String> = p.iter().map(describe_param).collect();
    format!("({})", kinds.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_syntax() {
        for ok in ["1.5", "1e3", "1E-3", "0.5e+10", "12.0"] {
            assert!(is_float_syntax(ok), "{ok}");
        }
        for bad in ["1.", "1.2.3", "1e", "1e+", "10s", "1.5x", "", "e5", "1_000"] {
            assert!(!is_float_syntax(bad), "{bad}");
        }
    }

    #[test]
    fn cidr() {
        assert!(is_ipv4_cidr("10.0.0.0/8"));
        assert!(is_ipv4_cidr("0.0.0.0/0"));
        assert!(is_ipv4_cidr("192.168.1.1/32"));
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0/8",
            "256.0.0.0/8",
            "a/8",
            "10.0.0.0/",
            "10.0.0.0/+8",
        ] {
            assert!(!is_ipv4_cidr(bad), "{bad}");
        }
    }

    #[test]
    fn dollar_escaping() {
        assert!(ends_with_unescaped_dollar("eth$"));
        assert!(!ends_with_unescaped_dollar("eth\\$"));
        assert!(ends_with_unescaped_dollar("eth\\\\$"));
        assert!(!ends_with_unescaped_dollar("eth"));
    }

    #[test]
    fn prescan_depth() {
        let ok = format!(
            "G.V({}{})",
            "(".repeat(MAX_NESTING),
            ")".repeat(MAX_NESTING)
        );
        assert!(prescan(&ok).is_ok());
        let deep = format!("G.V({})", "(".repeat(MAX_NESTING + 1));
        let e = prescan(&deep).unwrap_err();
        assert_eq!(e.position, 4 + MAX_NESTING);
    }

    #[test]
    fn prescan_bounds_huge_inputs_without_recursion() {
        let parens = "(".repeat(1_000_000);
        assert!(prescan(&parens).is_err());
        let within = format!("G.V().Has('a', {}", "WITHIN(".repeat(1_000_000));
        assert!(prescan(&within).is_err());
    }

    #[test]
    fn prescan_ignores_parens_in_strings() {
        let s = format!("G.V('{}')", "(".repeat(100));
        assert_eq!(prescan(&s), Ok(None));
        assert_eq!(prescan("G.V('ab\\'c"), Ok(Some(4)));
    }

    #[test]
    fn found_token() {
        assert_eq!(describe_found("abc def", 0), "\"abc\"");
        assert_eq!(describe_found("x.V()", 0), "\"x\"");
        assert_eq!(describe_found("1.2.3)", 0), "\"1.2.3\"");
        assert_eq!(describe_found("'a\\'b' x", 0), "\"'a\\\\'b'\"");
        assert_eq!(describe_found("=", 0), "\"=\"");
        assert_eq!(describe_found("\n", 0), "\"\\n\"");
        assert_eq!(describe_found("", 0), "end of query");
    }
}
