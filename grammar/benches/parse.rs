//! Parse latency of typical queries (target: well under 20 µs each).

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

const QUERIES: &[(&str, &str)] = &[
    ("has", "G.V().Has('Name','eth0')"),
    (
        "out_regex",
        "G.V().Has('Type','veth').Out().Has('Name', REGEX('eth.*'))",
    ),
    (
        "ten_steps",
        "G.V().Has('Type', 'netns').Out().Has('Type', WITHIN('veth', 'device')).OutE().Has('RelationType', 'layer2').InV().Dedup().Sort(ASC, 'Name').Range(0, 10).Values('Name')",
    ),
    (
        "flows",
        "G.V().Has('Name','vm1').Out().Has('Name','eth0').Flows().Has('Network.A', '10.0.0.1').Dedup().Sort(DESC, 'Metric.ABBytes').Limit(10)",
    ),
];

fn bench_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    for (name, query) in QUERIES {
        assert!(topotap_grammar::parse(query).is_ok(), "{query}");
        group.bench_function(*name, |b| {
            b.iter(|| topotap_grammar::parse(black_box(query)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);
