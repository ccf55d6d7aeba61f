//! Value steps: `Values`, `ValueMap`, `Keys`, `Sum`. The values they build count
//! against the byte budget as they are made.

use std::collections::VecDeque;

use hashbrown::HashSet;
use serde_json::{Map, Value};

use super::{err, Evaluator, Stage};
use crate::gremlin::filter::{field, Element, Field, Key, Num, Obj, Special};
use crate::gremlin::EvalError;

impl Evaluator<'_> {
    pub(super) fn values(
        &mut self,
        stage: Stage,
        key: &Key,
        wrong: impl FnOnce() -> EvalError,
    ) -> Result<Stage, EvalError> {
        let g = self.graph;
        let meter = &mut self.meter;
        let mut push = |items: &mut Vec<Value>, f: Option<Field<'_>>| {
            // Empty lists and maps are skipped (§1.7).
            if let Some(f) = f.filter(|f| !f.is_empty_container()) {
                let v = f.to_value();
                meter.value(&v)?;
                items.push(v);
            }
            Ok::<(), EvalError>(())
        };
        let mut items = Vec::new();
        match stage {
            Stage::Nodes(v) => {
                for ix in &v {
                    push(&mut items, field(&g.node(*ix), key))?;
                }
            }
            Stage::Edges(v) => {
                for ix in &v {
                    push(&mut items, field(&g.edge(*ix), key))?;
                }
            }
            Stage::List { items: list, .. } => {
                for item in &list {
                    if let Value::Object(m) = item {
                        push(&mut items, field(&Obj(m), key))?;
                    }
                }
            }
            _ => return Err(wrong()),
        }
        Ok(Stage::List {
            items,
            null_if_empty: true,
        })
    }

    pub(super) fn value_map(
        &mut self,
        stage: Stage,
        keys: &[(String, Key)],
        wrong: impl FnOnce() -> EvalError,
    ) -> Result<Stage, EvalError> {
        let g = self.graph;
        let meter = &mut self.meter;
        let mut items: Vec<Value> = Vec::new();
        let mut push = |v: Option<Value>| {
            if let Some(v) = v {
                meter.value(&v)?;
                items.push(v);
            }
            Ok::<(), EvalError>(())
        };
        match stage {
            Stage::Nodes(v) => {
                for ix in &v {
                    push(value_map_of(&g.node(*ix), keys))?;
                }
            }
            Stage::Edges(v) => {
                for ix in &v {
                    push(value_map_of(&g.edge(*ix), keys))?;
                }
            }
            Stage::List { items: list, .. } => {
                for item in &list {
                    if let Value::Object(m) = item {
                        push(value_map_of(&Obj(m), keys))?;
                    }
                }
            }
            _ => return Err(wrong()),
        }
        Ok(Stage::List {
            items,
            null_if_empty: false,
        })
    }

    pub(super) fn keys(
        &mut self,
        stage: Stage,
        wrong: impl FnOnce() -> EvalError,
    ) -> Result<Stage, EvalError> {
        let g = self.graph;
        let mut keys = KeySet::default();
        match stage {
            Stage::Nodes(v) => {
                if !v.is_empty() {
                    Special::NODE_KEYS.iter().for_each(|k| keys.add(k));
                }
                let mut seen = HashSet::with_capacity(v.len());
                for ix in v.into_iter().filter(|ix| seen.insert(*ix)) {
                    keys.add_metadata(g.node(ix).metadata());
                }
            }
            Stage::Edges(v) => {
                if !v.is_empty() {
                    Special::NODE_KEYS.iter().for_each(|k| keys.add(k));
                    keys.add("Parent");
                    keys.add("Child");
                }
                let mut seen = HashSet::with_capacity(v.len());
                for ix in v.into_iter().filter(|ix| seen.insert(*ix)) {
                    keys.add_metadata(g.edge(ix).metadata());
                }
            }
            Stage::List { items, .. } => {
                for item in &items {
                    if let Value::Object(m) = item {
                        keys.add_metadata(m);
                    }
                }
            }
            _ => return Err(wrong()),
        }
        let items: Vec<Value> = keys.order.into_iter().map(Value::String).collect();
        for k in &items {
            self.meter.value(k)?;
        }
        Ok(Stage::List {
            items,
            null_if_empty: true,
        })
    }

    pub(super) fn sum(
        &mut self,
        stage: Stage,
        key: Option<&Key>,
        wrong: impl FnOnce() -> EvalError,
    ) -> Result<Stage, EvalError> {
        let g = self.graph;
        let mut acc = Sum::default();
        match (stage, key) {
            (Stage::Nodes(v), Some(k)) => {
                self.meter.work(v.len())?;
                for ix in v {
                    let n = g.node(ix);
                    acc.add(field(&n, k), || format!("node '{}'", n.id()))?;
                }
            }
            (Stage::Edges(v), Some(k)) => {
                self.meter.work(v.len())?;
                for ix in v {
                    let e = g.edge(ix);
                    acc.add(field(&e, k), || format!("edge '{}'", e.id()))?;
                }
            }
            (Stage::Nodes(_) | Stage::Edges(_), None) => {
                return Err(err("Sum on nodes or edges takes a key"))
            }
            (Stage::List { items, .. }, key) => {
                for (i, item) in items.iter().enumerate() {
                    let f = match (key, item) {
                        (None, v) => Some(Field::Json(v)),
                        (Some(k), Value::Object(m)) => field(&Obj(m), k),
                        (Some(_), _) => None,
                    };
                    acc.add(f, || format!("value {}", i + 1))?;
                }
            }
            _ => return Err(wrong()),
        }
        Ok(Stage::Scalar(acc.into_value()))
    }
}

/// One `ValueMap` entry; `None` when `e` has none of the keys (§1.7: skipped).
fn value_map_of<'g>(e: &impl Element<'g>, keys: &[(String, Key)]) -> Option<Value> {
    let mut m = Map::new();
    for (name, key) in keys {
        if let Some(f) = field(e, key).filter(|f| !f.is_empty_container()) {
            m.insert(name.clone(), f.to_value());
        }
    }
    (!m.is_empty()).then_some(Value::Object(m))
}

/// Keys in first-seen order, without duplicates.
#[derive(Default)]
struct KeySet {
    seen: HashSet<String>,
    order: Vec<String>,
}

impl KeySet {
    fn add(&mut self, k: &str) {
        if !self.seen.contains(k) {
            self.seen.insert(k.to_owned());
            self.order.push(k.to_owned());
        }
    }

    /// Every key of `m` and, breadth first, the dotted keys of nested maps and of maps in
    /// lists (`ExtID.attached-mac`, `Captures.State`). No recursion: metadata depth comes
    /// from the network.
    fn add_metadata(&mut self, m: &Map<String, Value>) {
        let mut queue: VecDeque<(String, &Map<String, Value>)> =
            VecDeque::from([(String::new(), m)]);
        while let Some((prefix, m)) = queue.pop_front() {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                self.add(&key);
                match v {
                    Value::Object(sub) => queue.push_back((key, sub)),
                    Value::Array(items) => {
                        for item in items {
                            if let Value::Object(sub) = item {
                                queue.push_back((key.clone(), sub));
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// `Sum`: integers while every term is one (overflow is an error), floats otherwise.
#[derive(Default)]
struct Sum {
    int: i64,
    float: Option<f64>,
}

impl Sum {
    fn add(
        &mut self,
        f: Option<Field<'_>>,
        what: impl FnOnce() -> String,
    ) -> Result<(), EvalError> {
        let Some(f) = f else { return Ok(()) };
        match (f.as_num(), &mut self.float) {
            (Some(Num::I(i)), None) => {
                self.int = self
                    .int
                    .checked_add(i)
                    .ok_or_else(|| err("Sum overflows a 64-bit integer"))?;
            }
            (Some(n), Some(x)) => *x += n.as_f64(),
            (Some(Num::F(x)), None) => self.float = Some(self.int as f64 + x),
            (None, _) => {
                return Err(err(format!(
                    "Sum: {} has a non-numeric value {}",
                    what(),
                    f.to_value()
                )))
            }
        }
        Ok(())
    }

    fn into_value(self) -> Value {
        match self.float {
            None => Value::from(self.int),
            Some(x) => serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number),
        }
    }
}
