//! Typed syntax tree of a Gremlin query.
//!
//! A query is `G` followed by zero or more `.Step(params)`. Core steps are known to
//! this crate ([`StepKind`]); any other identifier becomes [`StepKind::Extension`] so that
//! later layers (flows, metrics) can add steps without this crate knowing them.
//!
//! Every node prints back to canonical Gremlin through `Display`, and
//! `parse(&query.to_string()) == Ok(query)` (spans excepted: they compare equal always).

/// Byte range of a step in the source text (start inclusive, end exclusive).
#[derive(Debug, Clone, Copy, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

/// Spans are positional metadata, not part of a query's meaning.
impl PartialEq for Span {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// A whole query: the steps following the leading `G`.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub steps: Vec<Step>,
}

/// One `.Name(params)` step.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub kind: StepKind,
    pub params: Vec<Param>,
    pub span: Span,
}

/// The steps this crate knows, plus a fall-through for extension steps.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StepKind {
    /// `.G` (no parentheses): back to the whole graph.
    G,
    V,
    E,
    Has,
    HasKey,
    HasNot,
    HasEither,
    Out,
    In,
    Both,
    OutE,
    InE,
    BothE,
    OutV,
    InV,
    BothV,
    Dedup,
    Count,
    Range,
    Limit,
    Sort,
    Values,
    ValueMap,
    Keys,
    Sum,
    ShortestPathTo,
    SubGraph,
    As,
    Select,
    /// `Context(t[, d])`, alias `At`: time travel; only as the first step (§2.7).
    Context,
    /// Any other identifier, spelled as written in the query (e.g. `Flows`, `CaptureNode`).
    Extension(String),
}

/// A step parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    /// Bare keywords allowed in parameter position.
    Keyword(Keyword),
    Predicate(Predicate),
    /// `Metadata('k1', v1, 'k2', v2, ...)`: key/value pairs in source order.
    Metadata(Vec<(String, Param)>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Keyword {
    Asc,
    Desc,
    Forever,
    Now,
}

/// Value predicates usable wherever a `Has`-style value is expected.
#[derive(Debug, Clone, PartialEq)]
pub enum Predicate {
    /// `NE(v)`: key present and not equal.
    Ne(Box<Param>),
    /// `NEE(v)`: not equal, or key absent.
    Nee(Box<Param>),
    Lt(Box<Param>),
    Gt(Box<Param>),
    Lte(Box<Param>),
    Gte(Box<Param>),
    /// `INSIDE(a, b)`: a < x < b.
    Inside(Box<Param>, Box<Param>),
    /// `OUTSIDE(a, b)`: x < a or x > b.
    Outside(Box<Param>, Box<Param>),
    /// `BETWEEN(a, b)`: a <= x < b.
    Between(Box<Param>, Box<Param>),
    Within(Vec<Param>),
    Without(Vec<Param>),
    /// `REGEX('re')`: anchored at both ends.
    Regex(String),
    /// `IPV4RANGE('10.0.0.0/8')`.
    Ipv4Range(String),
}

impl StepKind {
    /// Classifies a step identifier, case-insensitively; anything that is not a core step
    /// becomes [`StepKind::Extension`] keeping the spelling of the query.
    pub fn from_ident(ident: &str) -> StepKind {
        match ident.to_ascii_uppercase().as_str() {
            "G" => StepKind::G,
            "V" => StepKind::V,
            "E" => StepKind::E,
            "HAS" => StepKind::Has,
            "HASKEY" => StepKind::HasKey,
            "HASNOT" => StepKind::HasNot,
            "HASEITHER" => StepKind::HasEither,
            "OUT" => StepKind::Out,
            "IN" => StepKind::In,
            "BOTH" => StepKind::Both,
            "OUTE" => StepKind::OutE,
            "INE" => StepKind::InE,
            "BOTHE" => StepKind::BothE,
            "OUTV" => StepKind::OutV,
            "INV" => StepKind::InV,
            "BOTHV" => StepKind::BothV,
            "DEDUP" => StepKind::Dedup,
            "COUNT" => StepKind::Count,
            "RANGE" => StepKind::Range,
            "LIMIT" => StepKind::Limit,
            "SORT" => StepKind::Sort,
            "VALUES" => StepKind::Values,
            "VALUEMAP" => StepKind::ValueMap,
            "KEYS" => StepKind::Keys,
            "SUM" => StepKind::Sum,
            "SHORTESTPATHTO" => StepKind::ShortestPathTo,
            "SUBGRAPH" => StepKind::SubGraph,
            "AS" => StepKind::As,
            "SELECT" => StepKind::Select,
            "CONTEXT" | "AT" => StepKind::Context,
            _ => StepKind::Extension(ident.to_owned()),
        }
    }

    /// Canonical spelling (`HasKey`, `ShortestPathTo`, ...); extension steps as written.
    pub fn name(&self) -> &str {
        match self {
            StepKind::G => "G",
            StepKind::V => "V",
            StepKind::E => "E",
            StepKind::Has => "Has",
            StepKind::HasKey => "HasKey",
            StepKind::HasNot => "HasNot",
            StepKind::HasEither => "HasEither",
            StepKind::Out => "Out",
            StepKind::In => "In",
            StepKind::Both => "Both",
            StepKind::OutE => "OutE",
            StepKind::InE => "InE",
            StepKind::BothE => "BothE",
            StepKind::OutV => "OutV",
            StepKind::InV => "InV",
            StepKind::BothV => "BothV",
            StepKind::Dedup => "Dedup",
            StepKind::Count => "Count",
            StepKind::Range => "Range",
            StepKind::Limit => "Limit",
            StepKind::Sort => "Sort",
            StepKind::Values => "Values",
            StepKind::ValueMap => "ValueMap",
            StepKind::Keys => "Keys",
            StepKind::Sum => "Sum",
            StepKind::ShortestPathTo => "ShortestPathTo",
            StepKind::SubGraph => "SubGraph",
            StepKind::As => "As",
            StepKind::Select => "Select",
            StepKind::Context => "Context",
            StepKind::Extension(name) => name,
        }
    }
}

impl Param {
    /// The string value, if this parameter is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Param::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl Keyword {
    /// Canonical (upper-case) spelling.
    pub fn name(self) -> &'static str {
        match self {
            Keyword::Asc => "ASC",
            Keyword::Desc => "DESC",
            Keyword::Forever => "FOREVER",
            Keyword::Now => "NOW",
        }
    }
}

impl Predicate {
    /// Canonical (upper-case) spelling of the predicate name.
    pub fn name(&self) -> &'static str {
        match self {
            Predicate::Ne(_) => "NE",
            Predicate::Nee(_) => "NEE",
            Predicate::Lt(_) => "LT",
            Predicate::Gt(_) => "GT",
            Predicate::Lte(_) => "LTE",
            Predicate::Gte(_) => "GTE",
            Predicate::Inside(..) => "INSIDE",
            Predicate::Outside(..) => "OUTSIDE",
            Predicate::Between(..) => "BETWEEN",
            Predicate::Within(_) => "WITHIN",
            Predicate::Without(_) => "WITHOUT",
            Predicate::Regex(_) => "REGEX",
            Predicate::Ipv4Range(_) => "IPV4RANGE",
        }
    }
}
