//! The flow table: a state machine fed `(now, decoded packet)` that keeps Skydive's bidirectional flows
//! and tells the caller when they are due for export.
//!
//! Like quinn-proto it does no I/O and reads no clock: the caller passes packet timestamps (or a virtual
//! clock in tests), calls [`FlowTable::poll_updates`] and [`FlowTable::drain_expired`] when
//! [`FlowTable::poll_timeout`] says so, and ships the returned [`FlowEvent`]s.
//!
//! Layout: flows live in a chunked slab of compact [`Flow`] records (no strings; JSON and field lookups
//! are built on demand), indexed by a `hashbrown::HashTable<u32>` of slab indices (pre-sized for
//! `max_flows`, 5 bytes per bucket) and threaded on intrusive LRU lists — one per expiry class
//! (ordinary, short-lived ARP/DNS, TCP-finished) — so that expiry, eviction of the least recently seen
//! flow and "flows touched since the last update" all walk only the flows they return. Processing a
//! packet of an existing flow allocates nothing.
//!
//! Semantics follow Skydive's `flow/table.go` (§6.4), with deliberate differences:
//! - expiry is per flow (`idle_timeout` after its last packet) rather than a coarse expire tick;
//! - TCP-finished flows expire `finished_timeout` (15 s) after their last packet, ARP and DNS flows
//!   `app_timeout` (10 s) after theirs, as Skydive's application timeouts;
//! - when the table is full the least recently seen flow is evicted (and reported) to make room, instead
//!   of dropping the new packet;
//! - `LastUpdateMetric` of a live flow covers the update window in progress.

mod json;
mod record;
pub mod synth;
mod xxh64;

use std::sync::Arc;
use std::time::Duration;

use hashbrown::{DefaultHashBuilder, HashTable};

use crate::packet::{Packet, Timestamp};
pub use record::{
    CaptureIdentity, Direction, DirectionStats, FinishType, Flow, IcmpKind, IcmpLayer, LayersPath,
    LinkLayer, Metric, NetworkLayer, TransportLayer,
};
use record::{PacketKey, NIL_INDEX as NIL, S_LIST_SHIFT};
pub use xxh64::xxh64;

/// Which layers make up the flow key (Skydive's capture `LayerKeyMode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LayerKeyMode {
    /// MAC addresses are part of the key (Skydive's default).
    #[default]
    L2,
    /// Only L3+ identity (addresses, ports/ICMP, protocol): the same conversation seen through
    /// different MAC pairs is one flow. Frames without an IP layer still key on MACs.
    L3,
}

/// Flow table options (Skydive's `flow.max_entries`, `flow.update`, `flow.expire`,
/// `flow.application_timeout`, capture `LayerKeyMode` and identity).
#[derive(Clone, Debug)]
pub struct FlowTableConfig {
    /// Table capacity; at capacity the least recently seen flow is evicted. Default 500 000.
    pub max_flows: usize,
    /// Update interval: [`FlowTable::poll_updates`] reports the flows touched in each interval.
    /// Default 60 s.
    pub active_timeout: Duration,
    /// A flow idle this long expires. Default 600 s.
    pub idle_timeout: Duration,
    /// A TCP flow that saw FIN or RST expires this long after its last packet. Default 15 s.
    pub finished_timeout: Duration,
    /// ARP and DNS flows expire this long after their last packet. Default 10 s.
    pub app_timeout: Duration,
    pub layer_key_mode: LayerKeyMode,
    /// Skydive `CaptureID` stamped on every flow.
    pub capture_id: String,
    /// Skydive `NodeTID` stamped on every flow.
    pub node_tid: String,
    /// Evicted flows wait in a queue until [`FlowTable::drain_expired`]; beyond this many the oldest
    /// are dropped (counted in [`FlowTableStats::events_dropped`]). Default 65 536.
    pub max_pending_events: usize,
}

impl Default for FlowTableConfig {
    fn default() -> Self {
        FlowTableConfig {
            max_flows: 500_000,
            active_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(600),
            finished_timeout: Duration::from_secs(15),
            app_timeout: Duration::from_secs(10),
            layer_key_mode: LayerKeyMode::L2,
            capture_id: String::new(),
            node_tid: String::new(),
            max_pending_events: 65_536,
        }
    }
}

/// Why a flow is being reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowEventKind {
    /// Periodic update of a flow that saw packets in the last interval; it stays in the table.
    Update,
    /// Removed after its idle (or finished / application) timeout.
    Expired,
    /// Removed to make room for a new flow.
    Evicted,
    /// Removed by [`FlowTable::flush_all`].
    Flushed,
}

/// A flow reported by the table. Removed flows carry `FinishType` (TIMEOUT unless TCP ended them); the
/// flow's `LastUpdateMetric` / [`DirectionStats`] deltas cover what was not reported before.
#[derive(Clone, Debug)]
pub struct FlowEvent {
    pub kind: FlowEventKind,
    pub flow: Flow,
}

/// Counters of a table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowTableStats {
    /// Flows currently in the table.
    pub flows: usize,
    /// Packets given to [`FlowTable::process`].
    pub packets: u64,
    /// Frame bytes given to [`FlowTable::process`].
    pub bytes: u64,
    /// Packets with neither a link nor an IP layer (not accounted to any flow).
    pub undecoded: u64,
    pub created: u64,
    pub expired: u64,
    pub evicted: u64,
    pub flushed: u64,
    /// Update events emitted.
    pub updates: u64,
    /// Evicted flows dropped because the pending queue was full.
    pub events_dropped: u64,
}

const CHUNK_SHIFT: u32 = 10;
const CHUNK: usize = 1 << CHUNK_SHIFT;

const LIST_NORMAL: usize = 0;
const LIST_SHORT: usize = 1;
const LIST_FINISHED: usize = 2;

struct Slot {
    flow: Option<Flow>,
    prev: u32,
    next: u32,
}

// The per-flow memory budget is < 200 B: a slot plus 5-11 B of index.
const _: () = assert!(std::mem::size_of::<Slot>() <= 184);

#[derive(Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
}

/// Skydive's per-capture flow table. See the [module docs](self).
pub struct FlowTable {
    mode: LayerKeyMode,
    max_flows: usize,
    active_timeout: Duration,
    timeouts: [Duration; 3],
    max_pending: usize,
    identity: Arc<CaptureIdentity>,
    hasher: DefaultHashBuilder,
    index: HashTable<u32>,
    /// Bytes of the index allocation (fixed: the table never holds more than `max_flows`).
    index_bytes: usize,
    chunks: Vec<Vec<Slot>>,
    free: u32,
    lists: [List; 3],
    next_update: Option<Timestamp>,
    pending: Vec<FlowEvent>,
    out: Vec<FlowEvent>,
    stats: FlowTableStats,
}

impl FlowTable {
    pub fn new(config: FlowTableConfig) -> FlowTable {
        let max_flows = config.max_flows.clamp(1, NIL as usize - 1);
        let index = HashTable::with_capacity(max_flows);
        let index_bytes = index_bytes(index.capacity());
        FlowTable {
            mode: config.layer_key_mode,
            max_flows,
            active_timeout: config.active_timeout,
            timeouts: [
                config.idle_timeout,
                config.app_timeout,
                config.finished_timeout,
            ],
            max_pending: config.max_pending_events,
            identity: Arc::new(CaptureIdentity {
                node_tid: config.node_tid,
                capture_id: config.capture_id,
            }),
            hasher: DefaultHashBuilder::default(),
            index,
            index_bytes,
            chunks: Vec::new(),
            free: NIL,
            lists: [List {
                head: NIL,
                tail: NIL,
            }; 3],
            next_update: None,
            pending: Vec::new(),
            out: Vec::new(),
            stats: FlowTableStats::default(),
        }
    }

    pub fn identity(&self) -> &CaptureIdentity {
        &self.identity
    }

    /// The capture's node got another `TID` (its owner was renamed or adopted): new
    /// flows and the flows held now carry `node_tid`, so `Flows()` from the node keeps
    /// finding them. Flows already handed out as events keep the old one.
    pub fn retag(&mut self, node_tid: &str) {
        if self.identity.node_tid == node_tid {
            return;
        }
        let identity = Arc::new(CaptureIdentity {
            node_tid: node_tid.to_owned(),
            capture_id: self.identity.capture_id.clone(),
        });
        for flow in self
            .chunks
            .iter_mut()
            .flatten()
            .filter_map(|s| s.flow.as_mut())
        {
            flow.set_identity(identity.clone());
        }
        self.identity = identity;
    }

    /// Account one packet captured at `now` whose original length on the wire was `frame_len` (Skydive
    /// counts frame bytes; the snaplen may have cut `packet.data` shorter).
    pub fn process(&mut self, now: Timestamp, packet: &Packet<'_>, frame_len: u32) {
        self.process_keeping(now, packet, frame_len, 0, |_| false);
    }

    /// Account one packet sampled 1-in-`sampling_rate` (sFlow): it stands for
    /// `sampling_rate` packets of its length, so the flow's packet and byte counts are
    /// scaled by it, as sFlow collectors estimate totals (a rate of 0 counts as 1).
    pub fn process_sampled(
        &mut self,
        now: Timestamp,
        packet: &Packet<'_>,
        frame_len: u32,
        sampling_rate: u32,
    ) {
        self.account(now, packet, frame_len, sampling_rate.max(1), 0, |_| false);
    }

    /// [`process`](Self::process), and when the packet's flow has kept fewer than `raw_limit` raw
    /// frames, offers it to `keep` (with the flow, already updated); if `keep` says it kept the frame,
    /// the flow counts it in `RawPacketsCaptured` ([`Flow::raw_packets_captured`]; the frame's
    /// number in the flow is that count after it).
    pub fn process_keeping(
        &mut self,
        now: Timestamp,
        packet: &Packet<'_>,
        frame_len: u32,
        raw_limit: u8,
        keep: impl FnOnce(&Flow) -> bool,
    ) {
        self.account(now, packet, frame_len, 1, raw_limit, keep);
    }

    /// One packet standing for `weight` packets (see [`Flow::update`]); the table's
    /// statistics count the packets it was given.
    fn account(
        &mut self,
        now: Timestamp,
        packet: &Packet<'_>,
        frame_len: u32,
        weight: u32,
        raw_limit: u8,
        keep: impl FnOnce(&Flow) -> bool,
    ) {
        self.stats.packets += 1;
        self.stats.bytes += u64::from(frame_len);
        if self.next_update.is_none() {
            self.next_update = Some(now + self.active_timeout);
        }
        let Some(pk) = PacketKey::from_packet(packet, self.mode) else {
            self.stats.undecoded += 1;
            return;
        };
        let hash = pk.table_hash(&self.hasher);
        let mut dir = Direction::AB;
        let chunks = &self.chunks;
        let found = self
            .index
            .find(hash, |&i| {
                match slot(chunks, i)
                    .flow
                    .as_ref()
                    .and_then(|f| pk.direction_in(&f.key))
                {
                    Some(d) => {
                        dir = d;
                        true
                    }
                    None => false,
                }
            })
            .copied();
        let idx = match found {
            Some(idx) => idx,
            None => {
                if self.index.len() >= self.max_flows {
                    self.evict_oldest();
                }
                let flow = Flow::new(now, &pk, self.mode, self.identity.clone(), packet);
                let list = if flow.is_short_lived() {
                    LIST_SHORT
                } else {
                    LIST_NORMAL
                };
                let idx = self.alloc(flow);
                let (index, chunks, hasher, mode) =
                    (&mut self.index, &self.chunks, &self.hasher, self.mode);
                index.insert_unique(hash, idx, |&i| rehash(chunks, hasher, mode, i));
                self.push_front(list, idx);
                self.stats.created += 1;
                idx
            }
        };
        let s = slot_mut(&mut self.chunks, idx);
        let Some(flow) = s.flow.as_mut() else { return };
        let finished = flow.update(now, dir, packet, frame_len, weight);
        if flow.raw_packets_captured() < raw_limit && keep(flow) {
            flow.count_raw_packet();
        }
        let list = usize::from(flow.state >> S_LIST_SHIFT);
        self.unlink(idx);
        let list = if finished { LIST_FINISHED } else { list };
        self.push_front(list, idx);
    }

    /// When the caller should next call [`poll_updates`](Self::poll_updates) /
    /// [`drain_expired`](Self::drain_expired): the next update tick or the earliest expiry
    /// (`Timestamp::ZERO`, i.e. now, when evicted flows are waiting to be drained; `None` before the
    /// first packet and after [`flush_all`](Self::flush_all)).
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let mut next = self.next_update;
        for (l, list) in self.lists.iter().enumerate() {
            if let Some(f) = self.flow_at(list.tail) {
                let due = f.last() + self.timeouts[l];
                next = Some(next.map_or(due, |n| n.min(due)));
            }
        }
        if !self.pending.is_empty() {
            next = Some(Timestamp::ZERO);
        }
        next
    }

    /// If the update interval has elapsed at `now`, report every flow that saw packets since the
    /// previous update (with its `LastUpdateMetric` for that window) and start a new window. Otherwise
    /// nothing.
    pub fn poll_updates(&mut self, now: Timestamp) -> impl Iterator<Item = FlowEvent> + '_ {
        self.out.clear();
        match self.next_update {
            Some(due) if now >= due => {
                let mut next = due + self.active_timeout;
                if next <= now {
                    next = now + self.active_timeout;
                }
                self.next_update = Some(next);
                for l in 0..self.lists.len() {
                    let mut i = self.lists[l].head;
                    while i != NIL {
                        let s = slot_mut(&mut self.chunks, i);
                        let Some(flow) = s.flow.as_mut() else { break };
                        if flow.window_packets() == 0 {
                            // Everything further down the list was last touched before the previous tick.
                            break;
                        }
                        self.out.push(FlowEvent {
                            kind: FlowEventKind::Update,
                            flow: flow.clone(),
                        });
                        flow.reset_window(now);
                        i = s.next;
                    }
                }
                self.stats.updates += self.out.len() as u64;
            }
            _ => {}
        }
        self.out.drain(..)
    }

    /// Remove and report flows whose timeout has passed at `now` (`Expired`), and flows evicted since
    /// the last call (`Evicted`).
    pub fn drain_expired(&mut self, now: Timestamp) -> impl Iterator<Item = FlowEvent> + '_ {
        self.out.clear();
        self.out.append(&mut self.pending);
        for l in 0..self.lists.len() {
            loop {
                let tail = self.lists[l].tail;
                let Some(f) = self.flow_at(tail) else { break };
                if f.last() + self.timeouts[l] > now {
                    break;
                }
                if let Some(mut flow) = self.remove(tail) {
                    flow.mark_timeout();
                    self.stats.expired += 1;
                    self.out.push(FlowEvent {
                        kind: FlowEventKind::Expired,
                        flow,
                    });
                }
            }
        }
        self.out.drain(..)
    }

    /// Remove and report every flow (capture stopped or deleted), after any pending evictions.
    pub fn flush_all(&mut self) -> impl Iterator<Item = FlowEvent> + '_ {
        self.out.clear();
        self.out.append(&mut self.pending);
        for l in 0..self.lists.len() {
            while self.lists[l].tail != NIL {
                let tail = self.lists[l].tail;
                let Some(mut flow) = self.remove(tail) else {
                    break;
                };
                flow.mark_timeout();
                self.stats.flushed += 1;
                self.out.push(FlowEvent {
                    kind: FlowEventKind::Flushed,
                    flow,
                });
            }
        }
        self.next_update = None;
        self.out.drain(..)
    }

    pub fn stats(&self) -> FlowTableStats {
        FlowTableStats {
            flows: self.index.len(),
            ..self.stats
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Every flow in the table (in no particular order).
    pub fn flows(&self) -> impl Iterator<Item = &Flow> + '_ {
        self.chunks
            .iter()
            .flat_map(|c| c.iter())
            .filter_map(|s| s.flow.as_ref())
    }

    /// Gives back the index capacity the flows do not use. The index is sized for
    /// `max_flows` up front (no rehash pause while packets arrive); a table that will
    /// see no more packets (a finished pcap upload kept for queries) then costs what its
    /// flows need instead. Later packets still work; the index grows again as needed.
    pub fn shrink_to_fit(&mut self) {
        let (chunks, hasher, mode) = (&self.chunks, &self.hasher, self.mode);
        self.index
            .shrink_to_fit(|&i| rehash(chunks, hasher, mode, i));
        self.index_bytes = index_bytes(self.index.capacity());
        self.pending.shrink_to_fit();
        self.out.shrink_to_fit();
    }

    /// Bytes held by the table's own structures (slab, index, queues), excluding the shared identity.
    pub fn memory_footprint(&self) -> usize {
        let slab: usize = self.chunks.iter().map(|c| c.capacity()).sum::<usize>();
        slab * std::mem::size_of::<Slot>()
            + self.chunks.capacity() * std::mem::size_of::<Vec<Slot>>()
            + self.index_bytes
            + (self.pending.capacity() + self.out.capacity()) * std::mem::size_of::<FlowEvent>()
    }

    /// Size of one slab slot (a [`Flow`] plus LRU links), for memory accounting.
    pub const SLOT_SIZE: usize = std::mem::size_of::<Slot>();

    // ---- internals ----

    fn flow_at(&self, i: u32) -> Option<&Flow> {
        if i == NIL {
            return None;
        }
        slot(&self.chunks, i).flow.as_ref()
    }

    fn evict_oldest(&mut self) {
        let mut oldest: Option<(u64, u32)> = None;
        for list in &self.lists {
            if let Some(f) = self.flow_at(list.tail) {
                let last = f.last().as_nanos();
                if oldest.is_none_or(|(t, _)| last < t) {
                    oldest = Some((last, list.tail));
                }
            }
        }
        let Some((_, idx)) = oldest else { return };
        if let Some(mut flow) = self.remove(idx) {
            flow.mark_timeout();
            self.stats.evicted += 1;
            if self.pending.len() >= self.max_pending {
                self.stats.events_dropped += 1;
            } else {
                self.pending.push(FlowEvent {
                    kind: FlowEventKind::Evicted,
                    flow,
                });
            }
        }
    }

    fn alloc(&mut self, flow: Flow) -> u32 {
        if self.free != NIL {
            let idx = self.free;
            let s = slot_mut(&mut self.chunks, idx);
            self.free = s.next;
            s.flow = Some(flow);
            s.prev = NIL;
            s.next = NIL;
            return idx;
        }
        if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        let n = self.chunks.len() - 1;
        let idx = ((n << CHUNK_SHIFT) + self.chunks[n].len()) as u32;
        self.chunks[n].push(Slot {
            flow: Some(flow),
            prev: NIL,
            next: NIL,
        });
        idx
    }

    /// Unlink, unindex and free slot `idx`, returning its flow.
    fn remove(&mut self, idx: u32) -> Option<Flow> {
        slot(&self.chunks, idx).flow.as_ref()?;
        let h = rehash(&self.chunks, &self.hasher, self.mode, idx);
        if let Ok(e) = self.index.find_entry(h, |&i| i == idx) {
            e.remove();
        }
        self.unlink(idx);
        let s = slot_mut(&mut self.chunks, idx);
        let flow = s.flow.take();
        s.next = self.free;
        s.prev = NIL;
        self.free = idx;
        flow
    }

    fn unlink(&mut self, idx: u32) {
        let s = slot(&self.chunks, idx);
        let (prev, next) = (s.prev, s.next);
        let list = s
            .flow
            .as_ref()
            .map_or(LIST_NORMAL, |f| usize::from(f.state >> S_LIST_SHIFT));
        if prev == NIL {
            self.lists[list].head = next;
        } else {
            slot_mut(&mut self.chunks, prev).next = next;
        }
        if next == NIL {
            self.lists[list].tail = prev;
        } else {
            slot_mut(&mut self.chunks, next).prev = prev;
        }
        let s = slot_mut(&mut self.chunks, idx);
        s.prev = NIL;
        s.next = NIL;
    }

    fn push_front(&mut self, list: usize, idx: u32) {
        let head = self.lists[list].head;
        let s = slot_mut(&mut self.chunks, idx);
        s.prev = NIL;
        s.next = head;
        if let Some(f) = s.flow.as_mut() {
            f.state = (f.state & ((1 << S_LIST_SHIFT) - 1)) | ((list as u8) << S_LIST_SHIFT);
        }
        if head == NIL {
            self.lists[list].tail = idx;
        } else {
            slot_mut(&mut self.chunks, head).prev = idx;
        }
        self.lists[list].head = idx;
    }
}

fn slot(chunks: &[Vec<Slot>], i: u32) -> &Slot {
    &chunks[(i >> CHUNK_SHIFT) as usize][i as usize & (CHUNK - 1)]
}

fn slot_mut(chunks: &mut [Vec<Slot>], i: u32) -> &mut Slot {
    &mut chunks[(i >> CHUNK_SHIFT) as usize][i as usize & (CHUNK - 1)]
}

/// Heap bytes of an index that can hold `capacity` flows without growing.
fn index_bytes(capacity: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    // hashbrown keeps buckets at most 7/8 full: one u32 plus one control byte per bucket.
    let buckets = (capacity * 8 / 7).next_power_of_two();
    buckets * (std::mem::size_of::<u32>() + 1)
}

fn rehash(chunks: &[Vec<Slot>], hasher: &DefaultHashBuilder, mode: LayerKeyMode, i: u32) -> u64 {
    match slot(chunks, i).flow.as_ref() {
        Some(f) => {
            let use_mac = mode == LayerKeyMode::L2 || f.network().is_none();
            f.key.as_packet_key(use_mac).table_hash(hasher)
        }
        None => 0,
    }
}
