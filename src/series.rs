//! The `Metrics()` Gremlin step and the steps over its result (Skydive §2.6, §1.7).
//!
//! - `G.V()...Metrics([key])`: per node, its metric samples under `key` (default
//!   `LastUpdateMetric`, the netlink probe's counters of the last sampling interval; a
//!   key whose value holds a `LastUpdateMetric`, such as `SFlow`, means that one).
//! - `G.Flows()...Metrics()`: per flow (by `UUID`), its `LastUpdateMetric`; over a
//!   past time (`G.At`/`G.Context`), the `LastUpdateMetric` of each of its snapshots
//!   then (`history::flows`), oldest first.
//!
//! Without a time context each series holds the latest sample; over a past graph that
//! holds every revision of a node valid in a time window, the series has one sample per
//! revision, in time order. The answer is Skydive's
//! `[{"<node ID or flow UUID>": [metric, ...]}]`, `[]` when there is none.
//!
//! On a series: `Aggregates([seconds])` sums every sample into time slices (default
//! 30 s, at most [`MAX_SLICES`]), `[{"Aggregated": [...]}]`, a sample spanning several
//! slices shared between them in proportion to the time it spent in each (integer
//! counters are split so that their sum is exact); `Sum()` gives one metric, every
//! counter summed, `Start`/`Last` the earliest and latest; `Sum(key)` one number;
//! `Has(...)` keeps the samples that match (and the series left with any); `Sort([ASC|
//! DESC,] [key])` orders each series' samples (default `Start`); `Count()` is the
//! number of series; `Values(key)` the key's value in every sample.

use std::any::Any;

use serde_json::{Map, Value};
use topotap_grammar::ast::{Param, Step, StepKind};
use topotap_topology::element::lookup;
use topotap_topology::gremlin::{
    EvalError, ExtOutput, Output, SortSpec, StepExtension, ValueFilter,
};
use topotap_topology::View;

use crate::capture::flows::{FlowItem, FlowSet};

/// Default `Aggregates()` slice, in seconds.
pub const DEFAULT_SLICE_SECS: i64 = 30;
/// Most slices `Aggregates()` makes; longer spans get longer slices.
pub const MAX_SLICES: i64 = 10_000;

/// One metric sample: counters and `Start`/`Last` (ms since the epoch).
pub type Sample = Map<String, Value>;

/// The `Metrics()` step.
pub struct MetricsStep;

impl StepExtension for MetricsStep {
    fn name(&self) -> &str {
        "Metrics"
    }

    fn check(&self, step: &Step) -> Result<(), EvalError> {
        match step.params.as_slice() {
            [] | [Param::Str(_)] => Ok(()),
            _ => Err(EvalError::new("Metrics takes no parameters or one key")),
        }
    }

    fn value_steps(&self) -> &[&str] {
        &["Aggregates"]
    }

    fn apply(&self, input: Output, step: &Step, graph: View<'_>) -> Result<Output, EvalError> {
        let key = match step.params.first() {
            Some(Param::Str(k)) => k.as_str(),
            _ => "LastUpdateMetric",
        };
        let series = match input {
            Output::Nodes(nodes) => by_node(nodes.iter().filter_map(|n| {
                let node = graph.node(*n);
                let sample = node_sample(node.metadata(), key)?;
                Some((node.id().to_string(), sample))
            })),
            Output::Ext(e) => {
                let Some(flows) = e.as_any().downcast_ref::<FlowSet>() else {
                    return Err(EvalError::cannot_follow(step, e.name()));
                };
                if !step.params.is_empty() {
                    return Err(EvalError::new("Metrics on flows takes no parameters"));
                }
                flows
                    .0
                    .iter()
                    .filter_map(|f| {
                        let uuid = f.field("UUID")?.as_str()?.to_owned();
                        // A past flow: its samples of the time asked, oldest first.
                        if let FlowItem::Past(p) = f {
                            return (!p.samples.is_empty()).then(|| (uuid, p.samples.clone()));
                        }
                        let sample = f.field("LastUpdateMetric")?.as_object()?.clone();
                        Some((uuid, vec![sample]))
                    })
                    .collect()
            }
            other => return Err(EvalError::cannot_follow(step, other.kind())),
        };
        Ok(Output::Ext(Box::new(MetricSeries { series })))
    }
}

/// Samples grouped by node ID, nodes in the order they come: a past graph over a time
/// window holds one node per revision, each with the sample of its own interval. A
/// sample seen twice (same `Start` and `Last`) counts once; each series is in `Start`
/// order.
fn by_node(samples: impl Iterator<Item = (String, Sample)>) -> Vec<(String, Vec<Sample>)> {
    let mut order: Vec<(String, Vec<Sample>)> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = Default::default();
    for (id, sample) in samples {
        let i = *index.entry(id.clone()).or_insert_with(|| {
            order.push((id, Vec::new()));
            order.len() - 1
        });
        let series = &mut order[i].1;
        let same = |s: &Sample| {
            time(s, "Start") == time(&sample, "Start") && time(s, "Last") == time(&sample, "Last")
        };
        if !series.iter().any(same) {
            series.push(sample);
        }
    }
    for (_, series) in &mut order {
        series.sort_by_key(|s| time(s, "Start"));
    }
    order
}

/// The sample under `key` in a node's metadata: an object with `Start` and `Last`, or
/// the `LastUpdateMetric` inside one (`SFlow`, `Ovs`).
fn node_sample(metadata: &Map<String, Value>, key: &str) -> Option<Sample> {
    let value = lookup(metadata, key)?.to_value();
    let object = value.as_object()?;
    let sample = match object.get("LastUpdateMetric").and_then(Value::as_object) {
        Some(inner) if !object.contains_key("Start") => inner,
        _ => object,
    };
    (sample.contains_key("Start") || sample.contains_key("Last")).then(|| sample.clone())
}

/// Metric series by node ID or flow UUID, in the order of their nodes or flows.
pub struct MetricSeries {
    pub series: Vec<(String, Vec<Sample>)>,
}

fn time(s: &Sample, key: &str) -> i64 {
    s.get(key).and_then(Value::as_i64).unwrap_or(0)
}

/// Whether a field is a counter (summed) rather than a time bound.
fn is_counter(k: &str) -> bool {
    k != "Start" && k != "Last"
}

/// Adds `v` to the counter `k` of `into`: integers exactly, floats if either is one.
fn add(into: &mut Sample, k: &str, v: &Value) {
    let sum = match (into.get(k), v) {
        (None, v) => v.clone(),
        (Some(a), b) => match (a.as_i64(), b.as_i64(), a.as_u64(), b.as_u64()) {
            (Some(x), Some(y), ..) if x.checked_add(y).is_some() => Value::from(x + y),
            (.., Some(x), Some(y)) if x.checked_add(y).is_some() => Value::from(x + y),
            _ => match (a.as_f64(), b.as_f64()) {
                (Some(x), Some(y)) => Value::from(x + y),
                _ => return,
            },
        },
    };
    into.insert(k.to_owned(), sum);
}

/// The part of counter `v` that falls in `[from, to)` of a sample spanning
/// `[start, start + span)`: the difference of floors of the cumulative shares, so that
/// the parts of a sample add up to `v` exactly.
fn share(v: &Value, start: i64, span: i64, from: i64, to: i64) -> Value {
    let before = i128::from(from - start);
    let upto = i128::from(to - start);
    let span = i128::from(span);
    if let Some(x) = v.as_u64() {
        let x = i128::from(x);
        let part = x * upto / span - x * before / span;
        return Value::from(u64::try_from(part).unwrap_or(0));
    }
    if let Some(x) = v.as_i64() {
        let x = i128::from(x);
        let part = x * upto / span - x * before / span;
        return Value::from(i64::try_from(part).unwrap_or(0));
    }
    match v.as_f64() {
        Some(x) => Value::from(x * (upto - before) as f64 / span as f64),
        None => v.clone(),
    }
}

impl MetricSeries {
    fn samples(&self) -> impl Iterator<Item = &Sample> {
        self.series.iter().flat_map(|(_, s)| s.iter())
    }

    /// Every counter summed; `Start` the earliest, `Last` the latest.
    fn sum(&self) -> Sample {
        let mut total = Sample::new();
        let (mut start, mut last) = (None::<i64>, None::<i64>);
        for s in self.samples() {
            for (k, v) in s.iter().filter(|(k, _)| is_counter(k)) {
                add(&mut total, k, v);
            }
            start = Some(start.map_or(time(s, "Start"), |x| x.min(time(s, "Start"))));
            last = Some(last.map_or(time(s, "Last"), |x| x.max(time(s, "Last"))));
        }
        total.insert("Start".into(), Value::from(start.unwrap_or(0)));
        total.insert("Last".into(), Value::from(last.unwrap_or(0)));
        total
    }

    /// Every sample summed into slices of `secs` seconds from the earliest `Start`.
    fn aggregates(&self, secs: i64) -> Vec<Sample> {
        let Some(first) = self.samples().map(|s| time(s, "Start")).min() else {
            return Vec::new();
        };
        let end = self
            .samples()
            .map(|s| time(s, "Last").max(time(s, "Start")))
            .max()
            .unwrap_or(first);
        let mut slice = secs.saturating_mul(1000).max(1);
        let span = end.saturating_sub(first);
        if span / slice >= MAX_SLICES {
            slice = span / MAX_SLICES + 1;
        }
        let mut slices: std::collections::BTreeMap<i64, Sample> = Default::default();
        for s in self.samples() {
            let (start, last) = (time(s, "Start"), time(s, "Last").max(time(s, "Start")));
            let index = |t: i64| (t - first) / slice;
            if last == start {
                let into = slices.entry(index(start)).or_default();
                for (k, v) in s.iter().filter(|(k, _)| is_counter(k)) {
                    add(into, k, v);
                }
                continue;
            }
            let mut i = index(start);
            // The last instant, `last`, belongs to the sample's final slice.
            while first + i * slice < last {
                let from = (first + i * slice).max(start);
                let to = (first + (i + 1) * slice).min(last);
                let into = slices.entry(i).or_default();
                for (k, v) in s.iter().filter(|(k, _)| is_counter(k)) {
                    add(into, k, &share(v, start, last - start, from, to));
                }
                i += 1;
            }
        }
        slices
            .into_iter()
            .map(|(i, mut m)| {
                m.insert("Start".into(), Value::from(first + i * slice));
                m.insert("Last".into(), Value::from(first + (i + 1) * slice));
                m
            })
            .collect()
    }
}

fn sort_samples(samples: &mut [Sample], spec: &SortSpec) {
    let key = spec.key.as_deref().unwrap_or("Start");
    samples.sort_by(|a, b| {
        let o = match (a.get(key), b.get(key)) {
            (Some(x), Some(y)) => match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => x.total_cmp(&y),
                _ => x.to_string().cmp(&y.to_string()),
            },
            (x, y) => x.is_some().cmp(&y.is_some()),
        };
        if spec.desc {
            o.reverse()
        } else {
            o
        }
    });
}

impl ExtOutput for MetricSeries {
    fn name(&self) -> &str {
        "Metrics"
    }

    fn to_json(&self, _: View<'_>) -> Value {
        if self.series.is_empty() {
            return Value::Array(Vec::new());
        }
        let map: Map<String, Value> = self
            .series
            .iter()
            .map(|(k, s)| {
                (
                    k.clone(),
                    Value::Array(s.iter().cloned().map(Value::Object).collect()),
                )
            })
            .collect();
        Value::Array(vec![Value::Object(map)])
    }

    fn apply_step(mut self: Box<Self>, step: &Step, _: View<'_>) -> Result<Output, EvalError> {
        match &step.kind {
            StepKind::Extension(n) if n.eq_ignore_ascii_case("Aggregates") => {
                let secs = match step.params.as_slice() {
                    [] => DEFAULT_SLICE_SECS,
                    [Param::Int(s)] if *s > 0 => *s,
                    _ => {
                        return Err(EvalError::new(
                            "Aggregates takes no parameters or a positive number of seconds",
                        ))
                    }
                };
                let aggregated = self.aggregates(secs);
                let series = if aggregated.is_empty() {
                    Vec::new()
                } else {
                    vec![("Aggregated".to_owned(), aggregated)]
                };
                Ok(Output::Ext(Box::new(MetricSeries { series })))
            }
            StepKind::Sum => match step.params.as_slice() {
                [] => Ok(Output::Value(Value::Object(self.sum()))),
                [Param::Str(k)] => {
                    let mut total = Sample::new();
                    for s in self.samples() {
                        if let Some(v) = s.get(k.as_str()) {
                            add(&mut total, k, v);
                        }
                    }
                    Ok(Output::Value(
                        total.remove(k.as_str()).unwrap_or(Value::from(0)),
                    ))
                }
                _ => Err(EvalError::new("Sum takes no parameters or one string key")),
            },
            StepKind::Has | StepKind::HasEither => {
                let filter = ValueFilter::new(&step.params, step.kind == StepKind::HasEither)?;
                for (_, samples) in &mut self.series {
                    samples.retain(|s| filter.matches(|k| lookup(s, k).map(|l| l.to_value())));
                }
                self.series.retain(|(_, s)| !s.is_empty());
                Ok(Output::Ext(self))
            }
            StepKind::Sort => {
                let spec = SortSpec::of(&step.params)?;
                for (_, samples) in &mut self.series {
                    sort_samples(samples, &spec);
                }
                Ok(Output::Ext(self))
            }
            StepKind::Count => Ok(Output::Value(Value::from(self.series.len()))),
            StepKind::Values => {
                let Some(Param::Str(k)) = step.params.first() else {
                    return Err(EvalError::new("Values takes one key"));
                };
                let values = self.samples().filter_map(|s| s.get(k.as_str()).cloned());
                Ok(Output::Value(Value::Array(values.collect())))
            }
            _ => Err(EvalError::cannot_follow(step, "Metrics")),
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample(start: i64, last: i64, rx: u64) -> Sample {
        json!({"RxPackets": rx, "Start": start, "Last": last})
            .as_object()
            .cloned()
            .unwrap()
    }

    #[test]
    fn aggregates_share_samples_between_slices_exactly() {
        let m = MetricSeries {
            series: vec![
                (
                    "a".into(),
                    vec![sample(0, 10_000, 7), sample(10_000, 40_000, 10)],
                ),
                ("b".into(), vec![sample(5_000, 5_000, 3)]),
            ],
        };
        let agg = m.aggregates(10);
        let rx: Vec<u64> = agg
            .iter()
            .map(|s| s["RxPackets"].as_u64().unwrap())
            .collect();
        // [0,10s): 7 + 3; the 10-40 s sample split in thirds (3, 3, 4).
        assert_eq!(rx, vec![10, 3, 3, 4]);
        assert_eq!(rx.iter().sum::<u64>(), 20);
        let starts: Vec<i64> = agg.iter().map(|s| time(s, "Start")).collect();
        assert_eq!(starts, vec![0, 10_000, 20_000, 30_000]);
        let total = m.sum();
        assert_eq!(total["RxPackets"], 20);
        assert_eq!(total["Start"], 0);
        assert_eq!(total["Last"], 40_000);
    }

    #[test]
    fn revisions_of_a_node_make_one_series_in_time_order() {
        let series = by_node(
            [
                ("n".to_owned(), sample(20, 30, 2)),
                ("m".to_owned(), sample(0, 10, 9)),
                ("n".to_owned(), sample(10, 20, 1)),
                ("n".to_owned(), sample(20, 30, 2)),
            ]
            .into_iter(),
        );
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].0, "n");
        let rx: Vec<u64> = series[0]
            .1
            .iter()
            .map(|s| s["RxPackets"].as_u64().unwrap())
            .collect();
        assert_eq!(rx, vec![1, 2]);
    }

    #[test]
    fn long_spans_get_at_most_max_slices() {
        let m = MetricSeries {
            series: vec![("a".into(), vec![sample(0, 100_000_000, 1_000_000)])],
        };
        let agg = m.aggregates(1);
        assert!(agg.len() as i64 <= MAX_SLICES, "{}", agg.len());
        let total: u64 = agg.iter().map(|s| s["RxPackets"].as_u64().unwrap()).sum();
        assert_eq!(total, 1_000_000);
    }
}
