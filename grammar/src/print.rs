//! Canonical Gremlin printing: `parse(&x.to_string())` gives back `x` for every AST the
//! parser can produce (floats must be finite: `NaN`/`inf` have no Gremlin spelling).

use std::fmt::{self, Display, Formatter, Write};

use crate::ast::{Keyword, Param, Predicate, Query, Step, StepKind};

impl Display for Query {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_char('G')?;
        for step in &self.steps {
            write!(f, ".{step}")?;
        }
        Ok(())
    }
}

impl Display for Step {
    /// `.G` prints without parentheses; every other step as `Name(p1, p2)`.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.name())?;
        if self.kind == StepKind::G && self.params.is_empty() {
            return Ok(());
        }
        f.write_char('(')?;
        write_list(f, &self.params)?;
        f.write_char(')')
    }
}

impl Display for StepKind {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Display for Keyword {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Display for Param {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Param::Int(i) => write!(f, "{i}"),
            Param::Float(x) => write_float(f, *x),
            Param::Str(s) => write_str_literal(f, s),
            Param::Bool(b) => write!(f, "{b}"),
            Param::Keyword(k) => write!(f, "{k}"),
            Param::Predicate(p) => write!(f, "{p}"),
            Param::Metadata(pairs) => {
                f.write_str("Metadata(")?;
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write_str_literal(f, k)?;
                    write!(f, ", {v}")?;
                }
                f.write_char(')')
            }
        }
    }
}

impl Display for Predicate {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}(", self.name())?;
        match self {
            Predicate::Ne(v)
            | Predicate::Nee(v)
            | Predicate::Lt(v)
            | Predicate::Gt(v)
            | Predicate::Lte(v)
            | Predicate::Gte(v) => write!(f, "{v}")?,
            Predicate::Inside(a, b) | Predicate::Outside(a, b) | Predicate::Between(a, b) => {
                write!(f, "{a}, {b}")?
            }
            Predicate::Within(vs) | Predicate::Without(vs) => write_list(f, vs)?,
            Predicate::Regex(s) | Predicate::Ipv4Range(s) => write_str_literal(f, s)?,
        }
        f.write_char(')')
    }
}

fn write_list(f: &mut Formatter<'_>, params: &[Param]) -> fmt::Result {
    for (i, p) in params.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{p}")?;
    }
    Ok(())
}

/// Shortest round-trip representation, always with a `.` or an exponent so that it
/// re-parses as a float (`2.0`, `1.5`, `1e100`).
fn write_float(f: &mut Formatter<'_>, x: f64) -> fmt::Result {
    write!(f, "{x:?}")
}

/// Single-quoted, escaping `'`, `\`, newline and tab so the output stays on one line.
fn write_str_literal(f: &mut Formatter<'_>, s: &str) -> fmt::Result {
    f.write_char('\'')?;
    for c in s.chars() {
        match c {
            '\'' => f.write_str("\\'")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\t' => f.write_str("\\t")?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('\'')
}
