//! `Has`-style filters: field resolution (skydive-behaviour.md §2.4) and predicates (§2.3).
//!
//! A [`Filter`] is compiled once per step (regexes included) and then matched against
//! many elements without allocating, except for the `@ID`/`Parent`/`Child` special keys
//! whose string form is built on demand.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::net::Ipv4Addr;

use regex::Regex;
use serde_json::{Number, Value};
use topotap_grammar::ast::{Param, Predicate};

use super::EvalError;
use crate::element::{lookup, Lookup};
use crate::{EdgeRef, Metadata, NodeRef};

/// Deepest `Metadata(...)` nesting accepted when flattening to dotted keys. The parser
/// bounds nesting too; this guards ASTs built by other means.
const MAX_METADATA_NESTING: usize = 32;

/// Compiled regexes larger than this are rejected (`regex` size limit, in bytes).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Element keys that are not metadata (§2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Special {
    Id,
    Host,
    Origin,
    CreatedAt,
    UpdatedAt,
    DeletedAt,
    Revision,
    /// Edges only; on nodes `Parent` is a metadata key.
    Parent,
    /// Edges only; on nodes `Child` is a metadata key.
    Child,
}

impl Special {
    pub(crate) const NODE_KEYS: [&'static str; 7] = [
        "@ID",
        "@Host",
        "@Origin",
        "@CreatedAt",
        "@UpdatedAt",
        "@DeletedAt",
        "@Revision",
    ];
}

/// A resolved key: where a field lives.
#[derive(Debug, Clone)]
pub(crate) enum Key {
    /// A top-level metadata key (no dot): one map lookup.
    Plain(String),
    /// A dotted key into nested maps or lists of maps.
    Dotted(String),
    /// A special element key; the string is the key as written (after `Metadata.`
    /// stripping), used as a metadata key where the special does not apply.
    Special(Special, String),
}

impl Key {
    /// The key as written, without a `Metadata.` prefix.
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Key::Plain(s) | Key::Dotted(s) | Key::Special(_, s) => s,
        }
    }

    pub(crate) fn parse(key: &str) -> Key {
        let key = key.strip_prefix("Metadata.").unwrap_or(key);
        let special = match key {
            "@ID" => Some(Special::Id),
            "@Host" => Some(Special::Host),
            "@Origin" => Some(Special::Origin),
            "@CreatedAt" => Some(Special::CreatedAt),
            "@UpdatedAt" => Some(Special::UpdatedAt),
            "@DeletedAt" => Some(Special::DeletedAt),
            "@Revision" => Some(Special::Revision),
            "Parent" => Some(Special::Parent),
            "Child" => Some(Special::Child),
            _ => None,
        };
        match special {
            Some(s) => Key::Special(s, key.to_owned()),
            None if key.contains('.') => Key::Dotted(key.to_owned()),
            None => Key::Plain(key.to_owned()),
        }
    }
}

/// The value of a field on one element.
#[derive(Debug, Clone)]
pub(crate) enum Field<'g> {
    Json(&'g Value),
    /// Collected through a list of objects (`Captures.State`).
    Many(Vec<&'g Value>),
    Str(Cow<'g, str>),
    Int(i64),
}

impl Field<'_> {
    pub(crate) fn to_value(&self) -> Value {
        match self {
            Field::Json(v) => (*v).clone(),
            Field::Many(vs) => Value::Array(vs.iter().map(|v| (*v).clone()).collect()),
            Field::Str(s) => Value::String(s.clone().into_owned()),
            Field::Int(i) => Value::from(*i),
        }
    }

    /// True for an empty list or map (skipped by `Values`/`ValueMap`, §1.7).
    pub(crate) fn is_empty_container(&self) -> bool {
        match self {
            Field::Json(Value::Array(a)) => a.is_empty(),
            Field::Json(Value::Object(m)) => m.is_empty(),
            _ => false,
        }
    }

    /// Calls `f` on every scalar of the field — the field itself, or each element when
    /// it is a list (one nested list level included) — until `f` returns true.
    pub(crate) fn any_atom(&self, mut f: impl FnMut(Atom<'_>) -> bool) -> bool {
        match self {
            Field::Json(v) => any_atom_of(v, &mut f),
            Field::Many(vs) => vs.iter().any(|v| any_atom_of(v, &mut f)),
            Field::Str(s) => f(Atom::Str(s)),
            Field::Int(i) => f(Atom::Num(Num::I(*i))),
        }
    }

    /// The field as a single number, if it is one (sorting, summing).
    pub(crate) fn as_num(&self) -> Option<Num> {
        match self {
            Field::Json(Value::Number(n)) => Some(Num::of(n)),
            Field::Int(i) => Some(Num::I(*i)),
            _ => None,
        }
    }
}

fn any_atom_of(v: &Value, f: &mut impl FnMut(Atom<'_>) -> bool) -> bool {
    match v {
        Value::Array(items) => items.iter().any(|item| match item {
            Value::Array(inner) => inner.iter().any(|x| f(Atom::of(x))),
            other => f(Atom::of(other)),
        }),
        other => f(Atom::of(other)),
    }
}

/// A scalar a predicate looks at.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Atom<'a> {
    Str(&'a str),
    Num(Num),
    Bool(bool),
    /// null, a map, or a list nested too deep.
    Other,
}

impl<'a> Atom<'a> {
    fn of(v: &'a Value) -> Atom<'a> {
        match v {
            Value::String(s) => Atom::Str(s),
            Value::Number(n) => Atom::Num(Num::of(n)),
            Value::Bool(b) => Atom::Bool(*b),
            _ => Atom::Other,
        }
    }

    /// Skydive's `cast.ToInt64`-style reading for comparisons: numbers, and strings
    /// holding a decimal integer (or float).
    fn to_num(self) -> Option<Num> {
        match self {
            Atom::Num(n) => Some(n),
            Atom::Str(s) => {
                let s = s.trim();
                s.parse::<i64>()
                    .map(Num::I)
                    .ok()
                    .or_else(|| s.parse::<f64>().ok().filter(|x| x.is_finite()).map(Num::F))
            }
            _ => None,
        }
    }
}

/// A JSON number, integral when it fits in an i64.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Num {
    I(i64),
    F(f64),
}

impl Num {
    pub(crate) fn of(n: &Number) -> Num {
        match n.as_i64() {
            Some(i) => Num::I(i),
            None => Num::F(n.as_f64().unwrap_or(f64::NAN)),
        }
    }

    pub(crate) fn cmp(self, other: Num) -> Option<Ordering> {
        match (self, other) {
            (Num::I(a), Num::I(b)) => Some(a.cmp(&b)),
            (a, b) => a.as_f64().partial_cmp(&b.as_f64()),
        }
    }

    pub(crate) fn as_f64(self) -> f64 {
        match self {
            Num::I(i) => i as f64,
            Num::F(x) => x,
        }
    }
}

/// Anything a filter can look at: nodes, edges, and JSON objects in a value list.
pub(crate) trait Element<'g> {
    fn metadata(&self) -> &'g Metadata;
    fn special(&self, s: Special) -> SpecialField<'g>;
}

pub(crate) enum SpecialField<'g> {
    Found(Field<'g>),
    Absent,
    /// Not special for this kind of element: look the key up in metadata.
    NotSpecial,
}

/// The special keys nodes and edges share, read from a `NodeRef` or an `EdgeRef`.
macro_rules! common_special {
    ($e:expr, $s:expr) => {{
        let e = $e;
        let f = match $s {
            Special::Id => Field::Str(Cow::Owned(e.id().to_string())),
            Special::Host => Field::Str(Cow::Borrowed(e.host())),
            Special::Origin => Field::Str(Cow::Borrowed(e.origin())),
            Special::CreatedAt => Field::Int(e.created_at()),
            Special::UpdatedAt => Field::Int(e.updated_at()),
            Special::Revision => Field::Int(e.revision()),
            // Null for live elements; set in graphs built from history.
            Special::DeletedAt => match e.deleted_at() {
                Some(t) => Field::Int(t),
                None => return SpecialField::Absent,
            },
            Special::Parent | Special::Child => return SpecialField::NotSpecial,
        };
        SpecialField::Found(f)
    }};
}

impl<'g> Element<'g> for NodeRef<'g> {
    fn metadata(&self) -> &'g Metadata {
        NodeRef::metadata(self)
    }
    fn special(&self, s: Special) -> SpecialField<'g> {
        common_special!(self, s)
    }
}

impl<'g> Element<'g> for EdgeRef<'g> {
    fn metadata(&self) -> &'g Metadata {
        EdgeRef::metadata(self)
    }
    fn special(&self, s: Special) -> SpecialField<'g> {
        match s {
            Special::Parent => {
                SpecialField::Found(Field::Str(Cow::Owned(self.parent().id().to_string())))
            }
            Special::Child => {
                SpecialField::Found(Field::Str(Cow::Owned(self.child().id().to_string())))
            }
            s => common_special!(self, s),
        }
    }
}

/// A JSON object inside a value list (`ValueMap(...)` results, extension values).
pub(crate) struct Obj<'g>(pub(crate) &'g Metadata);

impl<'g> Element<'g> for Obj<'g> {
    fn metadata(&self) -> &'g Metadata {
        self.0
    }
    fn special(&self, _: Special) -> SpecialField<'g> {
        SpecialField::NotSpecial
    }
}

/// Resolves `key` on `e`.
pub(crate) fn field<'g>(e: &impl Element<'g>, key: &Key) -> Option<Field<'g>> {
    match key {
        Key::Plain(k) => e.metadata().get(k).map(Field::Json),
        Key::Dotted(k) => lookup_field(e.metadata(), k),
        Key::Special(s, raw) => match e.special(*s) {
            SpecialField::Found(f) => Some(f),
            SpecialField::Absent => None,
            SpecialField::NotSpecial => lookup_field(e.metadata(), raw),
        },
    }
}

fn lookup_field<'g>(m: &'g Metadata, key: &str) -> Option<Field<'g>> {
    lookup(m, key).map(|l| match l {
        Lookup::One(v) => Field::Json(v),
        Lookup::Many(vs) => Field::Many(vs),
    })
}

/// An equality term (§2.3): strings compare as strings; integers also match numeric
/// strings and truncated floats; booleans match booleans.
#[derive(Debug, Clone)]
pub(crate) enum Term {
    Str(String),
    Int(i64),
    Bool(bool),
}

impl Term {
    fn from_param(p: &Param, what: &str) -> Result<Term, String> {
        match p {
            Param::Str(s) => Ok(Term::Str(s.clone())),
            Param::Int(i) => Ok(Term::Int(*i)),
            Param::Float(x) => Ok(Term::Int(x.trunc() as i64)),
            Param::Bool(b) => Ok(Term::Bool(*b)),
            other => Err(format!(
                "{what} takes a string, number or boolean, found {}",
                describe(other)
            )),
        }
    }

    fn matches(&self, a: Atom<'_>) -> bool {
        match (self, a) {
            (Term::Str(t), Atom::Str(s)) => t == s,
            (Term::Int(t), Atom::Num(Num::I(i))) => *t == i,
            (Term::Int(t), Atom::Num(Num::F(x))) => x.is_finite() && x.trunc() == *t as f64,
            (Term::Int(t), Atom::Str(s)) => s.trim().parse::<i64>() == Ok(*t),
            (Term::Bool(t), Atom::Bool(b)) => *t == b,
            _ => false,
        }
    }

    fn any(&self, f: &Field<'_>) -> bool {
        f.any_atom(|a| self.matches(a))
    }
}

/// Numeric bound of a comparison predicate.
#[derive(Debug, Clone, Copy)]
struct Bound {
    value: Num,
    inclusive: bool,
}

#[derive(Debug, Clone)]
enum Matcher {
    /// Key present (`Has(k)`, `HasKey(k)`).
    Exists,
    /// Key absent (`HasNot(k)`).
    Absent,
    Term(Term),
    /// `NE(v)`: present and no element equal.
    Ne(Term),
    /// `NE(bool)`: Skydive turns it into `Term(!v)`.
    NeBool(bool),
    /// `NEE(v)`: no element equal, or absent.
    Nee(Term),
    /// `LT/GT/LTE/GTE/INSIDE/BETWEEN`.
    Range {
        lo: Option<Bound>,
        hi: Option<Bound>,
    },
    /// `OUTSIDE(a, b)`: x < a or x > b.
    Outside(Num, Num),
    Within(Vec<Term>),
    Without(Vec<Term>),
    Regex(Regex),
    Ipv4Range {
        network: u32,
        mask: u32,
    },
}

impl Matcher {
    fn matches(&self, f: Option<&Field<'_>>) -> bool {
        match self {
            Matcher::Exists => f.is_some(),
            Matcher::Absent => f.is_none(),
            Matcher::Nee(t) => !f.is_some_and(|f| t.any(f)),
            Matcher::Without(ts) => !f.is_some_and(|f| ts.iter().any(|t| t.any(f))),
            _ => {
                let Some(f) = f else { return false };
                match self {
                    Matcher::Term(t) => t.any(f),
                    Matcher::Ne(t) => !t.any(f),
                    Matcher::NeBool(b) => Term::Bool(!b).any(f),
                    Matcher::Within(ts) => f.any_atom(|a| ts.iter().any(|t| t.matches(a))),
                    Matcher::Range { lo, hi } => f.any_atom(|a| {
                        a.to_num().is_some_and(|x| {
                            lo.is_none_or(|b| within_bound(x, b, Ordering::Greater))
                                && hi.is_none_or(|b| within_bound(x, b, Ordering::Less))
                        })
                    }),
                    Matcher::Outside(a, b) => f.any_atom(|at| {
                        at.to_num().is_some_and(|x| {
                            x.cmp(*a) == Some(Ordering::Less)
                                || x.cmp(*b) == Some(Ordering::Greater)
                        })
                    }),
                    Matcher::Regex(re) => f.any_atom(|a| match a {
                        Atom::Str(s) => re.is_match(s),
                        _ => false,
                    }),
                    Matcher::Ipv4Range { network, mask } => f.any_atom(|a| match a {
                        Atom::Str(s) => {
                            let addr = s.split_once('/').map_or(s, |(a, _)| a);
                            addr.parse::<Ipv4Addr>()
                                .is_ok_and(|ip| u32::from(ip) & mask == *network)
                        }
                        _ => false,
                    }),
                    Matcher::Exists | Matcher::Absent | Matcher::Nee(_) | Matcher::Without(_) => {
                        unreachable!("handled above")
                    }
                }
            }
        }
    }
}

/// `x` against bound `b` on the side `want` (Greater for a lower bound).
fn within_bound(x: Num, b: Bound, want: Ordering) -> bool {
    match x.cmp(b.value) {
        Some(o) if o == want => true,
        Some(Ordering::Equal) => b.inclusive,
        _ => false,
    }
}

/// How clauses combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Combine {
    /// `Has`, `Out(...)`, `Metadata(...)`: every clause.
    All,
    /// `HasEither`: any clause.
    Any,
}

/// `Metadata(...)` pairs still to flatten: key prefix, pairs, nesting depth.
type Pending<'p> = (String, &'p [(String, Param)], usize);

/// A compiled `Has`-style filter. An empty filter matches everything.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    clauses: Vec<(Key, Matcher)>,
    combine: Combine,
}

impl Filter {
    /// Matches everything.
    pub(crate) fn all() -> Filter {
        Filter {
            clauses: Vec::new(),
            combine: Combine::All,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.clauses.is_empty()
    }

    /// `k1, v1, k2, v2, ...`, or a single `k` meaning "k exists" (§2.3).
    pub(crate) fn from_params(params: &[Param], combine: Combine) -> Result<Filter, String> {
        let mut clauses = Vec::with_capacity(params.len() / 2 + 1);
        match params {
            [] => {}
            [Param::Str(k)] => clauses.push((Key::parse(k), Matcher::Exists)),
            [other] => {
                return Err(format!(
                    "keys should be of string type, found {}",
                    describe(other)
                ))
            }
            _ if params.len() % 2 != 0 => {
                return Err(format!(
                    "params should be a list of key,value pairs, found {} parameters",
                    params.len()
                ))
            }
            _ => {
                for pair in params.chunks_exact(2) {
                    let Param::Str(k) = &pair[0] else {
                        return Err(format!(
                            "keys should be of string type, found {}",
                            describe(&pair[0])
                        ));
                    };
                    push_clause(&mut clauses, k, &pair[1])?;
                }
            }
        }
        Ok(Filter { clauses, combine })
    }

    /// `Metadata('k', v, ...)` (ShortestPathTo targets and edge filters): AND of terms,
    /// nested `Metadata(...)` values addressing nested maps.
    pub(crate) fn from_metadata(pairs: &[(String, Param)]) -> Result<Filter, String> {
        let mut clauses = Vec::new();
        // Explicit stack: (key prefix, pairs, depth).
        let mut stack: Vec<Pending<'_>> = vec![(String::new(), pairs, 0)];
        while let Some((prefix, pairs, depth)) = stack.pop() {
            if depth > MAX_METADATA_NESTING {
                return Err(format!(
                    "Metadata(...) nested deeper than {MAX_METADATA_NESTING} levels"
                ));
            }
            // Reverse so that clauses keep source order once popped.
            for (k, v) in pairs.iter().rev() {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match v {
                    Param::Metadata(inner) => stack.push((key, inner, depth + 1)),
                    v => push_clause(&mut clauses, &key, v)?,
                }
            }
        }
        Ok(Filter {
            clauses,
            combine: Combine::All,
        })
    }

    /// `HasNot(k)`.
    pub(crate) fn absent(key: &str) -> Filter {
        Filter {
            clauses: vec![(Key::parse(key), Matcher::Absent)],
            combine: Combine::All,
        }
    }

    #[inline]
    pub(crate) fn matches<'g>(&self, e: &impl Element<'g>) -> bool {
        let mut clauses = self
            .clauses
            .iter()
            .map(|(k, m)| m.matches(field(e, k).as_ref()));
        match self.combine {
            Combine::All => clauses.all(|x| x),
            Combine::Any => self.clauses.is_empty() || clauses.any(|x| x),
        }
    }
}

/// A `Has`/`HasEither` filter for values that live outside the graph, such as the
/// flows of the `Flows()` extension step: same predicates and list semantics as on
/// nodes, with keys resolved by the caller.
#[derive(Debug, Clone)]
pub struct ValueFilter(Filter);

impl ValueFilter {
    /// Compiles `k1, v1, k2, v2, ...` (or a single `k`: key present); `either` ORs the
    /// clauses like `HasEither`.
    pub fn new(params: &[Param], either: bool) -> Result<ValueFilter, EvalError> {
        let combine = if either { Combine::Any } else { Combine::All };
        Filter::from_params(params, combine)
            .map(ValueFilter)
            .map_err(EvalError::new)
    }

    /// Whether the element whose fields `lookup` resolves (by key as written, without a
    /// `Metadata.` prefix; `None` when absent) passes. A list value matches when any of
    /// its elements does.
    pub fn matches(&self, mut lookup: impl FnMut(&str) -> Option<Value>) -> bool {
        let mut clauses = self.0.clauses.iter().map(|(k, m)| {
            let value = lookup(k.as_str());
            let field = value.as_ref().map(Field::Json);
            m.matches(field.as_ref())
        });
        match self.0.combine {
            Combine::All => clauses.all(|x| x),
            Combine::Any => self.0.clauses.is_empty() || clauses.any(|x| x),
        }
    }
}

fn push_clause(clauses: &mut Vec<(Key, Matcher)>, key: &str, value: &Param) -> Result<(), String> {
    let matcher = match value {
        Param::Predicate(p) => predicate(p)?,
        Param::Metadata(_) => return Err(format!("value of key '{key}' cannot be Metadata(...)")),
        Param::Keyword(k) => {
            return Err(format!(
                "value of key '{key}' cannot be the keyword {}",
                k.name()
            ))
        }
        v => Matcher::Term(Term::from_param(v, "Has")?),
    };
    clauses.push((Key::parse(key), matcher));
    Ok(())
}

fn number(p: &Param, what: &str) -> Result<Num, String> {
    match p {
        Param::Int(i) => Ok(Num::I(*i)),
        Param::Float(x) => Ok(Num::F(*x)),
        other => Err(format!(
            "{what} values should be numbers, found {}",
            describe(other)
        )),
    }
}

fn predicate(p: &Predicate) -> Result<Matcher, String> {
    let name = p.name();
    let bound = |v: &Param, inclusive| -> Result<Option<Bound>, String> {
        Ok(Some(Bound {
            value: number(v, name)?,
            inclusive,
        }))
    };
    Ok(match p {
        Predicate::Ne(v) => match Term::from_param(v, name)? {
            Term::Bool(b) => Matcher::NeBool(b),
            t => Matcher::Ne(t),
        },
        Predicate::Nee(v) => Matcher::Nee(Term::from_param(v, name)?),
        Predicate::Lt(v) => Matcher::Range {
            lo: None,
            hi: bound(v, false)?,
        },
        Predicate::Lte(v) => Matcher::Range {
            lo: None,
            hi: bound(v, true)?,
        },
        Predicate::Gt(v) => Matcher::Range {
            lo: bound(v, false)?,
            hi: None,
        },
        Predicate::Gte(v) => Matcher::Range {
            lo: bound(v, true)?,
            hi: None,
        },
        Predicate::Inside(a, b) => Matcher::Range {
            lo: bound(a, false)?,
            hi: bound(b, false)?,
        },
        Predicate::Between(a, b) => Matcher::Range {
            lo: bound(a, true)?,
            hi: bound(b, false)?,
        },
        Predicate::Outside(a, b) => Matcher::Outside(number(a, name)?, number(b, name)?),
        Predicate::Within(vs) => Matcher::Within(
            vs.iter()
                .map(|v| Term::from_param(v, name))
                .collect::<Result<_, _>>()?,
        ),
        Predicate::Without(vs) => Matcher::Without(
            vs.iter()
                .map(|v| Term::from_param(v, name))
                .collect::<Result<_, _>>()?,
        ),
        Predicate::Regex(re) => Matcher::Regex(compile_regex(re)?),
        Predicate::Ipv4Range(cidr) => {
            let (network, mask) = parse_cidr(cidr).ok_or_else(|| {
                format!("IPV4RANGE takes an IPv4 CIDR like '10.0.0.0/8', found {cidr:?}")
            })?;
            Matcher::Ipv4Range { network, mask }
        }
    })
}

/// Anchors at both ends (§2.3) and bounds the compiled size.
fn compile_regex(re: &str) -> Result<Regex, String> {
    regex::RegexBuilder::new(&format!("^(?:{re})$"))
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            let detail = e.to_string();
            let last = detail
                .lines()
                .map(str::trim)
                .rfind(|l| !l.is_empty())
                .unwrap_or("invalid")
                .to_owned();
            format!("invalid regex {re:?}: {last}")
        })
}

/// `a.b.c.d/n` → (network, mask). The network is masked, so `10.1.2.3/8` means `10/8`.
fn parse_cidr(s: &str) -> Option<(u32, u32)> {
    let (addr, len) = s.split_once('/')?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    if len.is_empty() || len.len() > 2 || !len.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let len: u32 = len.parse().ok()?;
    if len > 32 {
        return None;
    }
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Some((u32::from(addr) & mask, mask))
}

/// How a parameter is named in messages.
pub(crate) fn describe(p: &Param) -> String {
    match p {
        Param::Int(i) => format!("integer {i}"),
        Param::Float(x) => format!("float {x:?}"),
        Param::Str(s) => format!("string {s:?}"),
        Param::Bool(b) => format!("boolean {b}"),
        Param::Keyword(k) => format!("keyword {}", k.name()),
        Param::Predicate(p) => format!("predicate {}", p.name()),
        Param::Metadata(_) => "Metadata(...)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Metadata {
        v.as_object().unwrap().clone()
    }

    fn has(m: &Metadata, params: Vec<Param>) -> bool {
        Filter::from_params(&params, Combine::All)
            .unwrap()
            .matches(&Obj(m))
    }

    fn s(x: &str) -> Param {
        Param::Str(x.to_owned())
    }

    fn pred(p: Predicate) -> Param {
        Param::Predicate(p)
    }

    #[test]
    fn terms_follow_skydive_casting() {
        let m = obj(json!({"MTU": 1500, "S": "1500", "F": 1500.9, "B": true, "L": ["a", "b"]}));
        assert!(has(&m, vec![s("MTU"), Param::Int(1500)]));
        assert!(has(&m, vec![s("S"), Param::Int(1500)]));
        assert!(has(&m, vec![s("F"), Param::Int(1500)]));
        assert!(has(&m, vec![s("MTU"), Param::Float(1500.7)]));
        assert!(!has(&m, vec![s("MTU"), s("1500")]));
        assert!(has(&m, vec![s("B"), Param::Bool(true)]));
        assert!(has(&m, vec![s("L"), s("b")]));
        assert!(!has(&m, vec![s("L"), s("c")]));
    }

    #[test]
    fn comparisons_and_ranges() {
        let m = obj(json!({"X": 10, "S": "5"}));
        let b = |p: Predicate| has(&m, vec![s("X"), pred(p)]);
        let i = |v| Box::new(Param::Int(v));
        assert!(b(Predicate::Gt(i(9))) && !b(Predicate::Gt(i(10))));
        assert!(b(Predicate::Gte(i(10))) && !b(Predicate::Gte(i(11))));
        assert!(b(Predicate::Lt(i(11))) && !b(Predicate::Lt(i(10))));
        assert!(b(Predicate::Lte(i(10))) && !b(Predicate::Lte(i(9))));
        assert!(b(Predicate::Inside(i(9), i(11))) && !b(Predicate::Inside(i(10), i(11))));
        assert!(b(Predicate::Between(i(10), i(11))) && !b(Predicate::Between(i(10), i(10))));
        assert!(b(Predicate::Outside(i(0), i(5))) && !b(Predicate::Outside(i(5), i(10))));
        assert!(has(&m, vec![s("S"), pred(Predicate::Lt(i(6)))]));
    }

    #[test]
    fn ipv4_range_is_real_containment() {
        let m = obj(json!({"IPV4": ["10.0.0.5/24", "192.168.1.1"]}));
        let r = |c: &str| has(&m, vec![s("IPV4"), pred(Predicate::Ipv4Range(c.into()))]);
        assert!(r("10.0.0.0/24"));
        assert!(r("10.0.0.0/8"));
        assert!(r("192.168.0.0/16"));
        assert!(r("0.0.0.0/0"));
        assert!(!r("10.0.1.0/24"));
        assert!(!r("11.0.0.0/8"));
        assert!(parse_cidr("10.0.0.0/33").is_none());
        assert!(parse_cidr("10.0.0/8").is_none());
    }

    #[test]
    fn regex_is_anchored_and_bad_regex_is_an_error() {
        let m = obj(json!({"Name": "eth0"}));
        let r = |re: &str| has(&m, vec![s("Name"), pred(Predicate::Regex(re.into()))]);
        assert!(r("eth.*"));
        assert!(!r("th"));
        assert!(r("eth0|lo"));
        let e = Filter::from_params(
            &[s("Name"), pred(Predicate::Regex("(".into()))],
            Combine::All,
        )
        .unwrap_err();
        assert!(e.starts_with("invalid regex \"(\""), "{e}");
    }

    #[test]
    fn metadata_flattens_nested_maps() {
        let m = obj(json!({"Ovs": {"OtherConfig": {"x": "1"}}, "Name": "br0"}));
        let f = Filter::from_metadata(&[
            ("Name".into(), s("br0")),
            (
                "Ovs".into(),
                Param::Metadata(vec![(
                    "OtherConfig".into(),
                    Param::Metadata(vec![("x".into(), s("1"))]),
                )]),
            ),
        ])
        .unwrap();
        assert!(f.matches(&Obj(&m)));
    }
}
