#![allow(unsafe_code)]
//! Bytes of heap per flow held by the flow table, measured with a counting global allocator.
//!
//! Run with `cargo bench -p topotap-targets --bench flow_memory`. For each size N the table is built
//! with `max_flows = N` (so the pre-sized index matches) and fed one packet of each of N flows; the
//! live heap growth from before `FlowTable::new` to after the last packet is divided by N.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};

use topotap_targets::flow::synth::udp_frame;
use topotap_targets::flow::{FlowTable, FlowTableConfig};
use topotap_targets::packet::{decode, LinkType, Timestamp};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call forwards to the system allocator with the caller's arguments unchanged; the
// counter is only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn main() {
    let frames: Vec<[u8; 64]> = (0..100u32).map(|i| udp_frame(i, false)).collect();
    black_box(&frames);
    println!(
        "slot size {} B (Flow {} B)",
        FlowTable::SLOT_SIZE,
        std::mem::size_of::<topotap_targets::flow::Flow>()
    );
    for n in [10_000u32, 100_000, 500_000] {
        let before = LIVE.load(Ordering::Relaxed);
        let mut table = FlowTable::new(FlowTableConfig {
            max_flows: n as usize,
            ..Default::default()
        });
        for i in 0..n {
            let frame = udp_frame(i, false);
            let p = decode(LinkType::Ethernet, &frame);
            table.process(Timestamp::from_micros(u64::from(i)), &p, 64);
        }
        let used = LIVE.load(Ordering::Relaxed) - before;
        assert_eq!(table.len(), n as usize);
        println!(
            "{n:>7} flows: {used:>11} bytes live = {:.1} B/flow (table's own estimate {:.1} B/flow)",
            used as f64 / f64::from(n),
            table.memory_footprint() as f64 / f64::from(n)
        );
        black_box(&table);
        drop(table);
    }
}
