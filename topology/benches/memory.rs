//! Heap bytes the graph store spends per node beyond the metadata itself, on the
//! synthetic 100k-node / 200k-edge topology. Target: < 400 B/node (edges included).
//!
//! `cargo bench -p topotap-topology --bench memory`
#![allow(unsafe_code)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use topotap_topology::{Graph, Metadata};

/// The system allocator, counting live bytes.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`; only a counter is updated.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as our caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as our caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            LIVE.fetch_add(new_size, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

fn main() {
    // Metadata alone: the same maps, held in a Vec whose own buffer is not counted
    // (the map headers live inside the store's elements, so they count as overhead).
    let base = live();
    let (nodes, edges) = common::elements();
    let before = live();
    let mut maps: Vec<Metadata> = Vec::with_capacity(nodes.len() + edges.len());
    maps.extend(nodes.iter().map(|n| n.metadata.clone()));
    maps.extend(edges.iter().map(|e| e.metadata.clone()));
    let metadata_bytes = live() - before - maps.capacity() * std::mem::size_of::<Metadata>();
    drop(maps);

    let (node_count, edge_count) = (nodes.len(), edges.len());
    let empty = live();
    let mut graph = Graph::new();
    let channel_bytes = live() - empty;
    // The elements are consumed (and freed) as they are added: measure from `base`.
    for n in nodes {
        graph.add_node(n).expect("unique node");
    }
    for e in edges {
        graph.add_edge(e).expect("endpoints exist");
    }
    let graph_bytes = live() - base - channel_bytes;
    let overhead = graph_bytes.saturating_sub(metadata_bytes);

    println!("nodes: {node_count}, edges: {edge_count}");
    println!(
        "metadata alone: {:.1} MB ({:.0} B/element)",
        metadata_bytes as f64 / 1e6,
        metadata_bytes as f64 / (node_count + edge_count) as f64
    );
    println!("graph built: {:.1} MB", graph_bytes as f64 / 1e6);
    println!(
        "store overhead beyond metadata: {:.1} MB = {:.0} B per node (edges included; {:.0} B per element)",
        overhead as f64 / 1e6,
        overhead as f64 / node_count as f64,
        overhead as f64 / (node_count + edge_count) as f64
    );
    println!(
        "(plus {:.1} MB for the event channel, allocated once by Graph::new)",
        channel_bytes as f64 / 1e6
    );
    drop(graph);

    // The same split by element kind: a graph of the nodes alone.
    let base = live();
    let (nodes, _) = common::elements();
    let before = live();
    let maps: Vec<Metadata> = nodes.iter().map(|n| n.metadata.clone()).collect();
    let node_metadata = live() - before - maps.capacity() * std::mem::size_of::<Metadata>();
    drop(maps);
    let mut graph = Graph::new();
    for n in nodes {
        graph.add_node(n).expect("unique node");
    }
    let nodes_only = live() - base - channel_bytes;
    let node_overhead = nodes_only.saturating_sub(node_metadata);
    let edge_overhead = overhead.saturating_sub(node_overhead);
    println!(
        "split: {:.0} B per node record, {:.0} B per edge record",
        node_overhead as f64 / node_count as f64,
        edge_overhead as f64 / edge_count as f64
    );
    let verdict = |b: usize| if b < 400 { "met" } else { "NOT met" };
    println!(
        "target < 400 B/node: node records {}; node records + 2 edges each {}",
        verdict(node_overhead / node_count),
        verdict(overhead / node_count)
    );
    drop(graph);
}
