//! Query budgets: how many elements, answer bytes and how much time one evaluation may
//! use.
//!
//! Every caller that evaluates a query — the REST `POST /api/topology`, WebSocket
//! subscriber filters, the capture placer, packet injections — passes a [`Budget`].
//! Evaluation checks it as it goes ([`Meter`]), not only on the final answer:
//!
//! - `max_elements` bounds every intermediate node, edge, path or value set, so an
//!   exploding traversal (`G.V().Both().Both()...`) stops at the step that overflows.
//! - `max_bytes` bounds the answer: value lists built during evaluation (`Values`,
//!   `ValueMap`, `Keys`) count a lower bound of their JSON size, and
//!   [`super::Answer`] counts the real size before a single byte is sent.
//! - `timeout` bounds the evaluation (the part that holds the graph read lock).
//!
//! Running out gives an [`EvalError`] whose [`ErrorKind`] is [`ErrorKind::TooLarge`]
//! (HTTP 413) or [`ErrorKind::Timeout`] (HTTP 503), with a one-line reason.
//!
//! ```
//! use std::time::Duration;
//! use topotap_topology::gremlin::Budget;
//!
//! let b = Budget { timeout: Duration::from_secs(2), ..Budget::default() };
//! assert_eq!(b.max_bytes, Budget::DEFAULT_MAX_BYTES);
//! ```

use std::time::{Duration, Instant};

use serde_json::Value;

use super::{ErrorKind, EvalError};

/// Limits on one query evaluation. `Copy`, cheap to pass around; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Largest node, edge, path (counting its nodes) or value set any step may produce.
    pub max_elements: usize,
    /// Largest answer, in bytes of JSON.
    pub max_bytes: usize,
    /// Longest evaluation.
    pub timeout: Duration,
}

impl Budget {
    pub const DEFAULT_MAX_ELEMENTS: usize = 5_000_000;
    pub const DEFAULT_MAX_BYTES: usize = 64 * 1024 * 1024;
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    /// No limit other than the built-in [`Budget::DEFAULT_MAX_ELEMENTS`] (tests, tools).
    pub fn unlimited() -> Budget {
        Budget {
            max_elements: Self::DEFAULT_MAX_ELEMENTS,
            max_bytes: usize::MAX,
            timeout: Duration::MAX,
        }
    }
}

impl Default for Budget {
    /// 5,000,000 elements, 64 MiB, 10 s.
    fn default() -> Self {
        Budget {
            max_elements: Self::DEFAULT_MAX_ELEMENTS,
            max_bytes: Self::DEFAULT_MAX_BYTES,
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }
}

/// How much work passes between two clock reads.
const CLOCK_EVERY: u64 = 4096;

/// A running evaluation's use of its [`Budget`].
pub(crate) struct Meter {
    budget: Budget,
    deadline: Option<Instant>,
    work: u64,
    next_clock: u64,
    bytes: usize,
}

impl Meter {
    pub(crate) fn new(budget: &Budget) -> Meter {
        Meter {
            budget: *budget,
            deadline: Instant::now().checked_add(budget.timeout),
            work: 0,
            next_clock: 0,
            bytes: 0,
        }
    }

    /// Fails when `n` elements exceed the element budget.
    pub(crate) fn elements(&self, n: usize) -> Result<(), EvalError> {
        if n > self.budget.max_elements {
            Err(too_many_elements(self.budget.max_elements))
        } else {
            Ok(())
        }
    }

    /// Counts `units` of work and looks at the clock every few thousand.
    #[inline]
    pub(crate) fn work(&mut self, units: usize) -> Result<(), EvalError> {
        self.work = self.work.saturating_add(units as u64);
        if self.work >= self.next_clock {
            self.next_clock = self.work.saturating_add(CLOCK_EVERY);
            self.check_clock()?;
        }
        Ok(())
    }

    /// Fails once the deadline has passed.
    pub(crate) fn check_clock(&self) -> Result<(), EvalError> {
        match self.deadline {
            Some(d) if Instant::now() >= d => Err(timed_out(self.budget.timeout)),
            _ => Ok(()),
        }
    }

    /// Counts a value added to a value list against the byte budget.
    pub(crate) fn value(&mut self, v: &Value) -> Result<(), EvalError> {
        self.bytes = self.bytes.saturating_add(json_size_lower_bound(v));
        if self.bytes > self.budget.max_bytes {
            return Err(too_many_bytes(self.budget.max_bytes));
        }
        self.work(1)
    }
}

pub(crate) fn too_many_elements(max: usize) -> EvalError {
    EvalError::with_kind(
        ErrorKind::TooLarge,
        format!("result exceeds {max} elements; narrow the query with Has(), Dedup() or Limit()"),
    )
}

/// The error of an answer longer than `max` bytes.
pub fn too_many_bytes(max: usize) -> EvalError {
    EvalError::with_kind(
        ErrorKind::TooLarge,
        format!(
            "answer exceeds {max} bytes; narrow the query with Has(), Dedup(), Limit() or Values()"
        ),
    )
}

pub(crate) fn timed_out(timeout: Duration) -> EvalError {
    EvalError::with_kind(
        ErrorKind::Timeout,
        format!(
            "query evaluation exceeded its {} ms time budget; narrow the query",
            timeout.as_millis()
        ),
    )
}

/// A lower bound of the length of `v` written as compact JSON, found without writing
/// it (escapes only make the real text longer). Iterative: metadata depth comes from
/// the network.
pub(crate) fn json_size_lower_bound(v: &Value) -> usize {
    let mut total = 0usize;
    let mut stack: Vec<&Value> = vec![v];
    while let Some(v) = stack.pop() {
        total = total.saturating_add(match v {
            Value::Null => 4,
            Value::Bool(b) => 4 + usize::from(!*b),
            Value::Number(_) => 1,
            Value::String(s) => s.len() + 2,
            Value::Array(items) => {
                stack.extend(items.iter());
                2 + items.len().saturating_sub(1)
            }
            Value::Object(m) => {
                stack.extend(m.values());
                2 + m.len().saturating_sub(1) + m.keys().map(|k| k.len() + 3).sum::<usize>()
            }
        });
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lower_bound_is_exact_without_escapes_and_numbers() {
        for v in [
            json!(null),
            json!(true),
            json!(false),
            json!("abc"),
            json!([]),
            json!({}),
            json!(["a", null, {"k": [true, {}]}]),
        ] {
            assert_eq!(json_size_lower_bound(&v), v.to_string().len(), "{v}");
        }
        let v = json!({"n": 12345, "s": "a\"b\n"});
        assert!(json_size_lower_bound(&v) <= v.to_string().len());
    }

    #[test]
    fn clock_runs_out() {
        let mut m = Meter::new(&Budget {
            timeout: Duration::ZERO,
            ..Budget::default()
        });
        let e = m.work(1).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Timeout);
    }

    #[test]
    fn bytes_run_out() {
        let mut m = Meter::new(&Budget {
            max_bytes: 10,
            ..Budget::default()
        });
        m.value(&json!("abcdef")).unwrap();
        assert_eq!(
            m.value(&json!("abcdef")).unwrap_err().kind,
            ErrorKind::TooLarge
        );
    }
}
