//! An sFlow v5 agent for one capture point: random 1-in-N packet sampling, periodic interface counter
//! samples, and datagrams packed under a size budget.
//!
//! [`SflowAgent`] is a state machine in the style of `quinn-proto`: it reads no clock and owns no socket.
//! The caller feeds it every captured frame with the capture time ([`SflowAgent::packet`]), ticks it at
//! least every 100 ms ([`SflowAgent::flush`]), hands it interface counters when
//! [`SflowAgent::counters_due`] says so ([`SflowAgent::push_counters`]), and receives each finished
//! datagram through a `FnMut(&[u8])` callback. After warm-up nothing is allocated per packet.
//!
//! Choices, citing sflow_version_5.txt:
//! - Sampling is random: after each sample the agent draws the number of packets to skip uniformly from
//!   `1..=2N-1` (mean N), as InMon's reference agent does. N = 1 samples every packet. The generator is
//!   xorshift64*, seeded by the caller (per capture and interface), so tests are reproducible.
//! - `sample_pool` counts every packet the agent was fed (sampled or not); `drops` is what the caller
//!   reports with [`SflowAgent::set_drops`] (the capture's kernel drops: packets the agent never saw).
//! - Sequence numbers start at 1 and increment per datagram (datagram header) and per sample of each
//!   kind (flow samples, counter samples of the one data source), like the reference agent.
//! - The data source is the captured interface (`source_id` type 0, index = ifIndex); flow samples carry
//!   `input` = that ifIndex and `output` = 0, the spec's "unknown interface" (a capture sees both
//!   directions and cannot tell where a frame goes next).
//! - `frame_length` is the length on the wire as captured, `stripped` = 0: captures have no FCS.
//! - Counter samples (generic interface counters, 0:1) are due every polling interval from the agent's
//!   start; a zero interval disables them, as Skydive's and Open vSwitch's `polling = 0` does.
//! - A datagram is sent as soon as the next sample would not fit its budget, and on every
//!   [`SflowAgent::flush`] that finds samples waiting.

use core::net::IpAddr;
use std::time::Duration;

use crate::packet::Timestamp;
use crate::wire::sflow5::{
    CounterRecord, DatagramBuilder, DatagramHeader, FlowRecord, FlowSampleHeader, IfCounters,
    SampledHeader, SourceId, COUNTERS_SAMPLE_FIXED_LEN, FLOW_SAMPLE_FIXED_LEN, HEADER_LEN_V4,
    HEADER_LEN_V6, IF_COUNTERS_LEN,
};
use crate::wire::Error;

/// Bytes of each sampled frame when the capture does not say (InMon's default).
pub const DEFAULT_HEADER_SIZE: usize = 128;
/// `header_protocol` values (sFlow v5 `header_protocol` enum).
pub mod header_protocol {
    pub const ETHERNET: u32 = 1;
    pub const IPV4: u32 = 11;
    pub const IPV6: u32 = 12;
}

/// Encoded length of a counters sample with one generic interface counters record.
const COUNTERS_SAMPLE_LEN: usize = 8 + COUNTERS_SAMPLE_FIXED_LEN + 8 + IF_COUNTERS_LEN;

/// How one agent samples and reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SflowConfig {
    /// Agent address in the datagram header.
    pub agent: IpAddr,
    /// Sub-agent id; each (agent, sub-agent) pair has its own datagram sequence.
    pub sub_agent_id: u32,
    /// N in 1-in-N; 0 is taken as 1.
    pub sampling_rate: u32,
    /// Leading bytes of each sampled frame to export; clamped so a sample fits an empty datagram.
    pub header_size: usize,
    /// Counter samples period; zero for none.
    pub polling_interval: Duration,
    /// ifIndex of the captured interface (data source, input interface, counters).
    pub if_index: u32,
    /// Largest datagram (UDP payload), e.g. `udp_payload_budget(1500, ipv6)`.
    pub budget: usize,
    /// PRNG seed; any value (0 is remapped).
    pub seed: u64,
}

/// What the agent has produced so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AgentStats {
    pub datagrams: u64,
    pub flow_samples: u64,
    pub counter_samples: u64,
    /// Samples in the datagrams handed out so far.
    pub samples_sent: u64,
}

/// xorshift64* (Vigna 2016): fast, tiny state, plenty for sampling decisions.
#[derive(Debug, Clone)]
struct XorShift64Star(u64);

impl XorShift64Star {
    fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (multiply-high; the bias is below 2^-32 for any u32 `n`).
    fn below(&mut self, n: u32) -> u32 {
        (((self.next_u64() >> 32) * u64::from(n)) >> 32) as u32
    }
}

/// A flow sample waiting for the next datagram; its header bytes are in `SflowAgent::arena`.
#[derive(Debug, Clone, Copy)]
struct PendingFlow {
    header: FlowSampleHeader,
    protocol: u32,
    frame_length: u32,
    start: usize,
    end: usize,
}

#[derive(Debug, Clone, Copy)]
enum Pending {
    Flow(PendingFlow),
    Counters { sequence: u32, counters: IfCounters },
}

/// The sFlow agent of one data source (see the module documentation).
#[derive(Debug)]
pub struct SflowAgent {
    config: SflowConfig,
    header_len: usize,
    rng: XorShift64Star,
    /// Packets to go until the next sample; 1 = the next packet is sampled.
    skip: u32,
    sample_pool: u32,
    drops: u32,
    flow_sequence: u32,
    counter_sequence: u32,
    datagram_sequence: u32,
    start: Timestamp,
    next_poll: Option<Timestamp>,
    pending: Vec<Pending>,
    pending_len: usize,
    arena: Vec<u8>,
    out: Vec<u8>,
    stats: AgentStats,
}

impl SflowAgent {
    /// Starts an agent at `now` (the origin of its uptime and of the counter polling schedule).
    pub fn new(mut config: SflowConfig, now: Timestamp) -> Result<Self, Error> {
        config.sampling_rate = config.sampling_rate.max(1);
        let header_len = match config.agent {
            IpAddr::V4(_) => HEADER_LEN_V4,
            IpAddr::V6(_) => HEADER_LEN_V6,
        };
        let smallest = header_len + COUNTERS_SAMPLE_LEN.max(flow_sample_len(0));
        if config.budget < smallest {
            return Err(Error::BufferTooSmall {
                needed: smallest,
                available: config.budget,
            });
        }
        // The largest header that still fits alone in a datagram, kept a multiple of 4.
        let max_header = (config.budget - header_len - flow_sample_len(0)) & !3;
        config.header_size = config.header_size.min(max_header);
        let mut rng = XorShift64Star::new(config.seed);
        let skip = draw_skip(&mut rng, config.sampling_rate);
        let next_poll = (!config.polling_interval.is_zero()).then(|| now + config.polling_interval);
        Ok(Self {
            header_len,
            rng,
            skip,
            sample_pool: 0,
            drops: 0,
            flow_sequence: 0,
            counter_sequence: 0,
            datagram_sequence: 0,
            start: now,
            next_poll,
            pending: Vec::with_capacity(64),
            pending_len: 0,
            arena: Vec::with_capacity(config.budget),
            out: vec![0; config.budget],
            stats: AgentStats::default(),
            config,
        })
    }

    pub fn config(&self) -> &SflowConfig {
        &self.config
    }

    /// Restarts the agent's clock (uptime and counter polling) at `at` before anything was sent: the
    /// first packet of a capture file read offline. Ignored once a datagram is pending or sent.
    pub fn start_clock(&mut self, at: Timestamp) {
        if self.datagram_sequence == 0 && self.pending.is_empty() {
            self.start = at;
            self.next_poll = (!self.config.polling_interval.is_zero())
                .then(|| at + self.config.polling_interval);
        }
    }

    pub fn stats(&self) -> AgentStats {
        self.stats
    }

    /// Packets fed so far, modulo 2^32 (the next flow sample's `sample_pool`).
    pub fn sample_pool(&self) -> u32 {
        self.sample_pool
    }

    /// Samples waiting for the next datagram.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Sets the `drops` reported from now on: packets lost before reaching the agent (kept modulo 2^32).
    pub fn set_drops(&mut self, drops: u64) {
        self.drops = drops as u32;
    }

    /// Feeds one captured frame of `orig_len` bytes on the wire, `frame` captured, whose first byte is a
    /// `protocol` header (see [`header_protocol`]). Returns whether it was sampled. A full datagram is
    /// handed to `send` first when the sample would not fit.
    pub fn packet(
        &mut self,
        now: Timestamp,
        protocol: u32,
        orig_len: u32,
        frame: &[u8],
        send: &mut impl FnMut(&[u8]),
    ) -> bool {
        self.sample_pool = self.sample_pool.wrapping_add(1);
        self.skip -= 1;
        if self.skip > 0 {
            return false;
        }
        self.skip = draw_skip(&mut self.rng, self.config.sampling_rate);
        let header = &frame[..frame.len().min(self.config.header_size)];
        let len = flow_sample_len(header.len());
        if !self.fits(len) {
            self.flush(now, send);
        }
        self.flow_sequence = self.flow_sequence.wrapping_add(1);
        let start = self.arena.len();
        self.arena.extend_from_slice(header);
        self.pending.push(Pending::Flow(PendingFlow {
            header: FlowSampleHeader {
                sequence: self.flow_sequence,
                source_id: SourceId::if_index(self.config.if_index),
                sampling_rate: self.config.sampling_rate,
                sample_pool: self.sample_pool,
                drops: self.drops,
                input: self.config.if_index,
                output: 0,
            },
            protocol,
            frame_length: orig_len.max(frame.len() as u32),
            start,
            end: self.arena.len(),
        }));
        self.pending_len += len;
        self.stats.flow_samples += 1;
        true
    }

    /// Whether a counter sample is due at `now`.
    pub fn counters_due(&self, now: Timestamp) -> bool {
        self.next_poll.is_some_and(|t| now >= t)
    }

    /// When the next counter sample is due, if polling is on.
    pub fn next_poll(&self) -> Option<Timestamp> {
        self.next_poll
    }

    /// Queues a counter sample with `counters` (its `if_index` is set to the agent's) and schedules the
    /// next one an interval later (or an interval from `now` if the caller fell more than one behind).
    pub fn push_counters(
        &mut self,
        now: Timestamp,
        mut counters: IfCounters,
        send: &mut impl FnMut(&[u8]),
    ) {
        if !self.fits(COUNTERS_SAMPLE_LEN) {
            self.flush(now, send);
        }
        counters.if_index = self.config.if_index;
        self.counter_sequence = self.counter_sequence.wrapping_add(1);
        self.pending.push(Pending::Counters {
            sequence: self.counter_sequence,
            counters,
        });
        self.pending_len += COUNTERS_SAMPLE_LEN;
        self.stats.counter_samples += 1;
        if let Some(t) = self.next_poll {
            let interval = self.config.polling_interval;
            let next = t + interval;
            self.next_poll = Some(if next <= now { now + interval } else { next });
        }
    }

    /// Sends the waiting samples, if any, as one datagram.
    pub fn flush(&mut self, now: Timestamp, send: &mut impl FnMut(&[u8])) {
        if self.pending.is_empty() {
            return;
        }
        self.datagram_sequence = self.datagram_sequence.wrapping_add(1);
        let header = DatagramHeader {
            agent: self.config.agent,
            sub_agent_id: self.config.sub_agent_id,
            sequence: self.datagram_sequence,
            uptime_ms: now.saturating_since(self.start).as_millis() as u32,
        };
        let n = self.pending.len() as u64;
        // The budget was checked sample by sample, so no push can fail; should one anyway, the
        // samples before it still go out.
        if let Ok(mut b) = DatagramBuilder::new(&mut self.out, header, self.config.budget) {
            for p in &self.pending {
                let _ = match p {
                    Pending::Flow(f) => b.push_flow_sample(
                        &f.header,
                        &[FlowRecord::SampledHeader(SampledHeader {
                            protocol: f.protocol,
                            frame_length: f.frame_length,
                            stripped: 0,
                            header: &self.arena[f.start..f.end],
                        })],
                    ),
                    Pending::Counters { sequence, counters } => b.push_counters_sample(
                        *sequence,
                        SourceId::if_index(self.config.if_index),
                        &[CounterRecord::Interface(*counters)],
                    ),
                };
            }
            send(b.finish());
        }
        self.stats.datagrams += 1;
        self.stats.samples_sent += n;
        self.pending.clear();
        self.arena.clear();
        self.pending_len = 0;
    }

    fn fits(&self, len: usize) -> bool {
        self.header_len + self.pending_len + len <= self.config.budget
    }
}

/// Encoded length of a flow sample with one sampled-header record of `header_len` bytes.
const fn flow_sample_len(header_len: usize) -> usize {
    let record = FlowRecord::SampledHeader(SampledHeader {
        protocol: 0,
        frame_length: 0,
        stripped: 0,
        header: &[],
    })
    .buffer_len()
        + ((header_len + 3) & !3);
    8 + FLOW_SAMPLE_FIXED_LEN + record
}

fn draw_skip(rng: &mut XorShift64Star, rate: u32) -> u32 {
    if rate <= 1 {
        return 1;
    }
    // Uniform in 1..=2N-1: mean N.
    1 + rng.below(rate.saturating_mul(2) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::sflow5::{udp_payload_budget, Datagram, Sample};
    use core::net::{Ipv4Addr, Ipv6Addr};

    fn config(rate: u32) -> SflowConfig {
        SflowConfig {
            agent: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
            sub_agent_id: 3,
            sampling_rate: rate,
            header_size: DEFAULT_HEADER_SIZE,
            polling_interval: Duration::ZERO,
            if_index: 42,
            budget: udp_payload_budget(1500, false),
            seed: 0x5eed,
        }
    }

    fn frame(len: usize, tag: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_add(tag)).collect()
    }

    /// Feeds `n` frames one microsecond apart, collecting datagrams.
    fn feed(agent: &mut SflowAgent, n: u32, len: usize, out: &mut Vec<Vec<u8>>) -> u32 {
        let f = frame(len, 0);
        let mut sampled = 0;
        for i in 0..n {
            let ts = Timestamp::from_micros(u64::from(i));
            sampled +=
                u32::from(
                    agent.packet(ts, header_protocol::ETHERNET, len as u32, &f, &mut |d| {
                        out.push(d.to_vec())
                    }),
                );
        }
        sampled
    }

    fn flow_samples(datagrams: &[Vec<u8>]) -> Vec<FlowSampleHeader> {
        datagrams
            .iter()
            .flat_map(|d| Datagram::parse(d).unwrap().samples)
            .filter_map(|s| match s {
                Sample::Flow(f) => Some(f.header),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn rate_one_samples_every_packet_with_its_header() {
        let mut agent = SflowAgent::new(config(1), Timestamp::ZERO).unwrap();
        let mut out = Vec::new();
        let f = frame(300, 9);
        for i in 0..5u64 {
            assert!(agent.packet(
                Timestamp::from_millis(i),
                header_protocol::ETHERNET,
                1000,
                &f,
                &mut |d| out.push(d.to_vec()),
            ));
        }
        assert!(out.is_empty(), "nothing sent before the flush");
        agent.flush(Timestamp::from_millis(50), &mut |d| out.push(d.to_vec()));
        assert_eq!(out.len(), 1);
        let d = Datagram::parse(&out[0]).unwrap();
        assert_eq!(d.header.agent, config(1).agent);
        assert_eq!(d.header.sub_agent_id, 3);
        assert_eq!(d.header.sequence, 1);
        assert_eq!(d.header.uptime_ms, 50);
        assert_eq!(d.samples.len(), 5);
        for (i, s) in d.samples.iter().enumerate() {
            let Sample::Flow(s) = s else { panic!("{s:?}") };
            assert_eq!(s.header.sequence, i as u32 + 1);
            assert_eq!(s.header.sample_pool, i as u32 + 1);
            assert_eq!(s.header.sampling_rate, 1);
            assert_eq!(s.header.source_id, SourceId::if_index(42));
            assert_eq!(
                (s.header.input, s.header.output, s.header.drops),
                (42, 0, 0)
            );
            let [FlowRecord::SampledHeader(h)] = s.records[..] else {
                panic!("{:?}", s.records)
            };
            assert_eq!(h.protocol, header_protocol::ETHERNET);
            assert_eq!(h.frame_length, 1000);
            assert_eq!(h.stripped, 0);
            assert_eq!(h.header, &f[..DEFAULT_HEADER_SIZE]);
        }
        // Nothing waiting: a flush sends nothing and the datagram sequence does not move.
        agent.flush(Timestamp::from_millis(60), &mut |d| out.push(d.to_vec()));
        assert_eq!(out.len(), 1);
        assert!(agent.packet(
            Timestamp::from_millis(70),
            header_protocol::ETHERNET,
            20,
            &f[..20],
            &mut |d| out.push(d.to_vec()),
        ));
        agent.flush(Timestamp::from_millis(80), &mut |d| out.push(d.to_vec()));
        let d = Datagram::parse(&out[1]).unwrap();
        assert_eq!(d.header.sequence, 2);
        let Sample::Flow(s) = &d.samples[0] else {
            panic!()
        };
        let FlowRecord::SampledHeader(h) = s.records[0] else {
            panic!()
        };
        assert_eq!(h.header, &f[..20], "short frames are sent whole");
        assert_eq!(agent.stats().datagrams, 2);
        assert_eq!(agent.stats().samples_sent, 6);
    }

    #[test]
    fn sampling_is_one_in_n_within_bounds() {
        for (rate, seed) in [(10u32, 1u64), (10, 99), (100, 7), (400, 12345)] {
            let mut agent = SflowAgent::new(
                SflowConfig {
                    seed,
                    ..config(rate)
                },
                Timestamp::ZERO,
            )
            .unwrap();
            let n = 400_000u32;
            let mut out = Vec::new();
            let sampled = feed(&mut agent, n, 64, &mut out);
            agent.flush(Timestamp::from_secs(1), &mut |d| out.push(d.to_vec()));
            // Skips uniform on 1..=2N-1 have variance ~N^2/3: the count's standard deviation is
            // sqrt(n/(3N)); 6 of them is a bound no seed should cross.
            let expected = f64::from(n) / f64::from(rate);
            let sd = (f64::from(n) / (3.0 * f64::from(rate))).sqrt();
            assert!(
                (f64::from(sampled) - expected).abs() < 6.0 * sd,
                "rate {rate}: {sampled} samples, expected {expected} ± {}",
                6.0 * sd
            );
            let samples = flow_samples(&out);
            assert_eq!(samples.len() as u32, sampled);
            // Renormalising by the rate estimates the packet count.
            let last = samples.last().unwrap();
            assert!(last.sample_pool <= n && last.sample_pool + 2 * rate > n);
            for (i, s) in samples.iter().enumerate() {
                assert_eq!(s.sequence, i as u32 + 1, "per-source sequence");
                assert_eq!(s.sampling_rate, rate);
            }
            // Pools grow by at least 1 and at most 2N-1 between samples.
            for w in samples.windows(2) {
                let gap = w[1].sample_pool - w[0].sample_pool;
                assert!((1..2 * rate).contains(&gap), "gap {gap}");
            }
        }
    }

    #[test]
    fn sampling_depends_on_the_seed_and_is_reproducible() {
        let run = |seed| {
            let mut agent =
                SflowAgent::new(SflowConfig { seed, ..config(10) }, Timestamp::ZERO).unwrap();
            let mut out = Vec::new();
            feed(&mut agent, 2_000, 64, &mut out);
            agent.flush(Timestamp::from_secs(1), &mut |d| out.push(d.to_vec()));
            flow_samples(&out)
                .iter()
                .map(|s| s.sample_pool)
                .collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn datagrams_stay_within_the_budget() {
        for (agent_ip, ipv6) in [
            (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), false),
            (IpAddr::V6(Ipv6Addr::LOCALHOST), true),
        ] {
            let budget = udp_payload_budget(1500, ipv6);
            let mut agent = SflowAgent::new(
                SflowConfig {
                    agent: agent_ip,
                    budget,
                    ..config(1)
                },
                Timestamp::ZERO,
            )
            .unwrap();
            let mut out = Vec::new();
            feed(&mut agent, 1_000, 1514, &mut out);
            agent.flush(Timestamp::from_secs(1), &mut |d| out.push(d.to_vec()));
            // 8 + 32 + 8 + 16 + 128 = 192 bytes a sample: 7 fit in 1472 - 28 (IPv4), 7 in 1452 - 40.
            let per = (budget - if ipv6 { 40 } else { 28 }) / 192;
            assert_eq!(out.len(), 1_000usize.div_ceil(per));
            let mut seqs = Vec::new();
            for d in &out {
                assert!(d.len() <= budget, "{} > {budget}", d.len());
                let d = Datagram::parse(d).unwrap();
                seqs.push(d.header.sequence);
                assert!(d.samples.len() <= per);
            }
            assert_eq!(seqs, (1..=out.len() as u32).collect::<Vec<_>>());
            assert_eq!(flow_samples(&out).len(), 1_000);
        }
    }

    #[test]
    fn large_header_sizes_are_clamped_to_fit_a_datagram() {
        let mut agent = SflowAgent::new(
            SflowConfig {
                header_size: 4096,
                ..config(1)
            },
            Timestamp::ZERO,
        )
        .unwrap();
        let max = agent.config().header_size;
        assert_eq!(max, (1472 - 28 - 64) & !3);
        let mut out = Vec::new();
        feed(&mut agent, 3, 9000, &mut out);
        agent.flush(Timestamp::from_secs(1), &mut |d| out.push(d.to_vec()));
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|d| d.len() <= 1472));
        assert!(SflowAgent::new(
            SflowConfig {
                budget: 100,
                ..config(1)
            },
            Timestamp::ZERO
        )
        .is_err());
    }

    #[test]
    fn drops_are_reported_in_later_samples() {
        let mut agent = SflowAgent::new(config(1), Timestamp::ZERO).unwrap();
        let mut out = Vec::new();
        feed(&mut agent, 1, 64, &mut out);
        agent.set_drops(17);
        feed(&mut agent, 1, 64, &mut out);
        agent.flush(Timestamp::from_secs(1), &mut |d| out.push(d.to_vec()));
        let drops: Vec<u32> = flow_samples(&out).iter().map(|s| s.drops).collect();
        assert_eq!(drops, [0, 17]);
    }

    #[test]
    fn counter_samples_follow_the_polling_interval() {
        let start = Timestamp::from_secs(1_000);
        let mut agent = SflowAgent::new(
            SflowConfig {
                polling_interval: Duration::from_secs(10),
                ..config(1)
            },
            start,
        )
        .unwrap();
        let mut out = Vec::new();
        let mut polled = Vec::new();
        // A virtual clock ticking every 100 ms for 35 s.
        for tick in 0..=350u64 {
            let now = start + Duration::from_millis(tick * 100);
            if agent.counters_due(now) {
                polled.push(tick);
                let counters = IfCounters {
                    in_octets: tick,
                    if_index: 999,
                    ..IfCounters::default()
                };
                agent.push_counters(now, counters, &mut |d| out.push(d.to_vec()));
            }
            agent.flush(now, &mut |d| out.push(d.to_vec()));
        }
        assert_eq!(polled, [100, 200, 300]);
        assert_eq!(out.len(), 3);
        for (i, d) in out.iter().enumerate() {
            let d = Datagram::parse(d).unwrap();
            assert_eq!(d.header.uptime_ms, (i as u32 + 1) * 10_000);
            let [Sample::Counters(c)] = &d.samples[..] else {
                panic!("{:?}", d.samples)
            };
            assert_eq!(c.sequence, i as u32 + 1);
            assert_eq!(c.source_id, SourceId::if_index(42));
            let [CounterRecord::Interface(ifc)] = c.records[..] else {
                panic!()
            };
            assert_eq!(ifc.if_index, 42, "the agent's ifIndex");
            assert_eq!(ifc.in_octets, polled[i]);
        }
        // A caller far behind schedule does not get a burst of catch-up samples.
        let late = start + Duration::from_secs(100);
        assert!(agent.counters_due(late));
        agent.push_counters(late, IfCounters::default(), &mut |_| {});
        assert!(!agent.counters_due(late + Duration::from_secs(9)));
        assert!(agent.counters_due(late + Duration::from_secs(10)));
        // Zero interval: never.
        let agent = SflowAgent::new(config(1), start).unwrap();
        assert!(!agent.counters_due(start + Duration::from_secs(1_000_000)));
        assert_eq!(agent.next_poll(), None);
    }

    #[test]
    fn flow_and_counter_samples_share_datagrams() {
        let mut agent = SflowAgent::new(
            SflowConfig {
                polling_interval: Duration::from_secs(1),
                ..config(1)
            },
            Timestamp::ZERO,
        )
        .unwrap();
        let mut out = Vec::new();
        feed(&mut agent, 3, 64, &mut out);
        let now = Timestamp::from_secs(1);
        assert!(agent.counters_due(now));
        agent.push_counters(now, IfCounters::default(), &mut |d| out.push(d.to_vec()));
        assert_eq!(agent.pending(), 4);
        agent.flush(now, &mut |d| out.push(d.to_vec()));
        let d = Datagram::parse(&out[0]).unwrap();
        assert_eq!(d.samples.len(), 4);
        assert!(matches!(d.samples[3], Sample::Counters(_)));
    }
}
