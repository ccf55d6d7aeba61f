//! Set steps: `Dedup`, `Sort`, `Range`/`Limit`, `As`/`Select` — on nodes, edges, paths,
//! value lists and on the records of extension values ([`Records`]).

use std::borrow::Cow;
use std::cmp::Ordering;

use hashbrown::HashSet;
use serde_json::Value;

use super::{dedup_nodes, err, Evaluator, Stage};
use crate::gremlin::compile::SortSpec;
use crate::gremlin::filter::{field, Element, Field, Key, Num, Obj};
use crate::gremlin::{EvalError, Records};
use crate::{EdgeIx, NodeIx};

impl Evaluator<'_> {
    pub(super) fn dedup(
        &mut self,
        stage: Stage,
        keys: &[Key],
        wrong: impl FnOnce() -> EvalError,
    ) -> Result<Stage, EvalError> {
        let g = self.graph;
        let mut seen_keys: HashSet<String> = HashSet::new();
        // Elements with none of the keys are always kept (§2.5).
        let mut by_keys = |k: Option<String>| k.is_none_or(|k| seen_keys.insert(k));
        Ok(match stage {
            Stage::Nodes(mut v) => {
                self.meter.work(v.len())?;
                if keys.is_empty() {
                    let mut seen = HashSet::with_capacity(v.len());
                    v.retain(|ix| seen.insert(*ix));
                } else {
                    v.retain(|ix| by_keys(dedup_key(&g.node(*ix), keys)));
                }
                Stage::Nodes(v)
            }
            Stage::Edges(mut v) => {
                self.meter.work(v.len())?;
                if keys.is_empty() {
                    let mut seen = HashSet::with_capacity(v.len());
                    v.retain(|ix| seen.insert(*ix));
                } else {
                    v.retain(|ix| by_keys(dedup_key(&g.edge(*ix), keys)));
                }
                Stage::Edges(v)
            }
            Stage::Paths(mut v) => {
                if !keys.is_empty() {
                    return Err(err("Dedup on paths takes no keys"));
                }
                self.meter.work(v.len())?;
                let mut seen: HashSet<Vec<NodeIx>> = HashSet::new();
                v.retain(|path| seen.insert(path.clone()));
                Stage::Paths(v)
            }
            Stage::List {
                mut items,
                null_if_empty,
            } => {
                self.meter.work(items.len())?;
                items.retain(|item| match (item, keys.is_empty()) {
                    (_, true) => by_keys(Some(item.to_string())),
                    (Value::Object(m), false) => by_keys(dedup_key(&Obj(m), keys)),
                    _ => true,
                });
                Stage::List {
                    items,
                    null_if_empty,
                }
            }
            Stage::Ext(mut e) => match e.records() {
                Some(r) => {
                    self.meter.work(r.len())?;
                    dedup_records(r, keys);
                    Stage::Ext(e)
                }
                None => return Err(wrong()),
            },
            _ => return Err(wrong()),
        })
    }

    pub(super) fn sort(
        &mut self,
        stage: Stage,
        spec: &SortSpec,
        wrong: impl FnOnce() -> EvalError,
    ) -> Result<Stage, EvalError> {
        let g = self.graph;
        let desc = spec.desc;
        let cmp = |a: &SortKey<'_>, b: &SortKey<'_>| a.compare(b, desc);
        Ok(match stage {
            Stage::Nodes(v) => {
                self.meter.work(v.len())?;
                let elem_key = spec.element_key();
                let mut keyed: Vec<(SortKey<'_>, NodeIx)> = v
                    .into_iter()
                    .map(|ix| (SortKey::of(field(&g.node(ix), &elem_key)), ix))
                    .collect();
                keyed.sort_by(|a, b| cmp(&a.0, &b.0));
                Stage::Nodes(keyed.into_iter().map(|(_, ix)| ix).collect())
            }
            Stage::Edges(v) => {
                self.meter.work(v.len())?;
                let elem_key = spec.element_key();
                let mut keyed: Vec<(SortKey<'_>, EdgeIx)> = v
                    .into_iter()
                    .map(|ix| (SortKey::of(field(&g.edge(ix), &elem_key)), ix))
                    .collect();
                keyed.sort_by(|a, b| cmp(&a.0, &b.0));
                Stage::Edges(keyed.into_iter().map(|(_, ix)| ix).collect())
            }
            Stage::List {
                items,
                null_if_empty,
            } => {
                self.meter.work(items.len())?;
                let key = spec.key.as_deref().map(Key::parse);
                let mut order: Vec<(SortKey<'_>, usize)> = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        let k = match (&key, item) {
                            (None, v) => SortKey::of(Some(Field::Json(v))),
                            (Some(k), Value::Object(m)) => SortKey::of(field(&Obj(m), k)),
                            (Some(_), _) => SortKey::Missing,
                        };
                        (k, i)
                    })
                    .collect();
                order.sort_by(|a, b| cmp(&a.0, &b.0));
                let order: Vec<usize> = order.into_iter().map(|(_, i)| i).collect();
                Stage::List {
                    items: pick(items, &order),
                    null_if_empty,
                }
            }
            Stage::Ext(mut e) => match e.records() {
                Some(r) => {
                    self.meter.work(r.len())?;
                    sort_records(r, spec);
                    Stage::Ext(e)
                }
                None => return Err(wrong()),
            },
            _ => return Err(wrong()),
        })
    }

    pub(super) fn select(&self, labels: &[String]) -> Result<Stage, EvalError> {
        let mut nodes: Option<Vec<NodeIx>> = None;
        let mut edges: Option<Vec<EdgeIx>> = None;
        for label in labels {
            match self.labels.get(label) {
                Some(Stage::Nodes(v)) => nodes.get_or_insert_with(Vec::new).extend(v),
                Some(Stage::Edges(v)) => edges.get_or_insert_with(Vec::new).extend(v),
                _ => {
                    return Err(err(format!(
                        "no step labelled '{label}': label a step with As('{label}') first"
                    )))
                }
            }
        }
        match (nodes, edges) {
            (Some(n), None) => Ok(Stage::Nodes(dedup_nodes(n))),
            (None, Some(e)) => {
                let mut seen = HashSet::with_capacity(e.len());
                Ok(Stage::Edges(
                    e.into_iter().filter(|x| seen.insert(*x)).collect(),
                ))
            }
            _ => Err(err("Select cannot mix node and edge labels")),
        }
    }
}

/// Items `[a, b)` of `v`.
pub(crate) fn range<T>(mut v: Vec<T>, a: usize, b: usize) -> Vec<T> {
    v.truncate(b);
    v.drain(..a.min(v.len()));
    v
}

/// The items of `items` at `order`, in that order (each index at most once).
pub fn pick<T>(items: Vec<T>, order: &[usize]) -> Vec<T> {
    let mut slots: Vec<Option<T>> = items.into_iter().map(Some).collect();
    order
        .iter()
        .filter_map(|&i| slots.get_mut(i).and_then(Option::take))
        .collect()
}

/// Core `Dedup(k...)` on records; no keys means the records' default keys.
pub(crate) fn dedup_records(r: &mut dyn Records, keys: &[Key]) {
    let default: Vec<Key>;
    let keys = if keys.is_empty() {
        default = r
            .default_dedup_keys()
            .iter()
            .map(|k| Key::parse(k))
            .collect();
        &default
    } else {
        keys
    };
    let mut seen: HashSet<String> = HashSet::new();
    let keep: Vec<usize> = (0..r.len())
        .filter(|&i| {
            let values: Vec<Option<Value>> = keys.iter().map(|k| r.field(i, k.as_str())).collect();
            // Records with none of the keys are always kept (§2.5).
            values.iter().all(Option::is_none)
                || seen.insert(
                    Value::Array(
                        values
                            .into_iter()
                            .map(|v| v.unwrap_or(Value::Null))
                            .collect(),
                    )
                    .to_string(),
                )
        })
        .collect();
    if keep.len() != r.len() {
        r.keep(&keep);
    }
}

/// Core `Sort` on records, by the given key or the records' default key.
pub(crate) fn sort_records(r: &mut dyn Records, spec: &SortSpec) {
    let key = spec.key.as_deref().map_or_else(
        || r.default_sort_key().to_owned(),
        |k| Key::parse(k).as_str().to_owned(),
    );
    let values: Vec<Option<Value>> = (0..r.len()).map(|i| r.field(i, &key)).collect();
    let mut order: Vec<(SortKey<'_>, usize)> = values
        .iter()
        .enumerate()
        .map(|(i, v)| (SortKey::of(v.as_ref().map(Field::Json)), i))
        .collect();
    order.sort_by(|a, b| a.0.compare(&b.0, spec.desc));
    let order: Vec<usize> = order.into_iter().map(|(_, i)| i).collect();
    r.keep(&order);
}

/// The `Dedup(k...)` identity of an element: its key values (null where absent), or
/// `None` when it has none of the keys.
fn dedup_key<'g>(e: &impl Element<'g>, keys: &[Key]) -> Option<String> {
    let mut any = false;
    let values: Vec<Value> = keys
        .iter()
        .map(|k| match field(e, k) {
            Some(f) => {
                any = true;
                f.to_value()
            }
            None => Value::Null,
        })
        .collect();
    any.then(|| Value::Array(values).to_string())
}

/// A sort key: numbers before strings before booleans before anything else; missing
/// values last in both directions.
pub(crate) enum SortKey<'a> {
    Num(Num),
    Str(Cow<'a, str>),
    Bool(bool),
    Other(String),
    Missing,
}

impl<'a> SortKey<'a> {
    pub(crate) fn of(f: Option<Field<'a>>) -> SortKey<'a> {
        let Some(f) = f else {
            return SortKey::Missing;
        };
        if let Some(n) = f.as_num() {
            return SortKey::Num(n);
        }
        match f {
            Field::Json(Value::String(s)) => SortKey::Str(Cow::Borrowed(s)),
            Field::Str(s) => SortKey::Str(s),
            Field::Json(Value::Bool(b)) => SortKey::Bool(*b),
            Field::Json(Value::Null) => SortKey::Missing,
            other => SortKey::Other(other.to_value().to_string()),
        }
    }

    fn rank(&self) -> u8 {
        match self {
            SortKey::Num(_) => 0,
            SortKey::Str(_) => 1,
            SortKey::Bool(_) => 2,
            SortKey::Other(_) => 3,
            SortKey::Missing => 4,
        }
    }

    pub(crate) fn compare(&self, other: &SortKey<'_>, desc: bool) -> Ordering {
        match (self, other) {
            (SortKey::Missing, SortKey::Missing) => return Ordering::Equal,
            (SortKey::Missing, _) => return Ordering::Greater,
            (_, SortKey::Missing) => return Ordering::Less,
            _ => {}
        }
        let o = match (self, other) {
            (SortKey::Num(a), SortKey::Num(b)) => a.cmp(*b).unwrap_or(Ordering::Equal),
            (SortKey::Str(a), SortKey::Str(b)) => a.cmp(b),
            (SortKey::Bool(a), SortKey::Bool(b)) => a.cmp(b),
            (SortKey::Other(a), SortKey::Other(b)) => a.cmp(b),
            (a, b) => a.rank().cmp(&b.rank()),
        };
        if desc {
            o.reverse()
        } else {
            o
        }
    }
}
