//! The sending side of an injection: a dedicated OS thread that enters the source
//! interface's namespace (`setns`), opens an AF_PACKET socket on the interface through
//! libpcap, and writes `Count` frames `Interval` ms apart.
//!
//! The thread is used for nothing else and exits when the injection ends, so the
//! namespace never leaks into other work. It checks the stop flag at least every
//! [`STOP_CHECK`], so a DELETE or a vanished interface ends it promptly.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::forge::Forger;
use super::resource::{JobState, Progress, SourceInterface};
use crate::netns::InterfaceError;

/// Longest sleep between two checks of the stop flag.
pub const STOP_CHECK: Duration = Duration::from_millis(20);

/// What one injection sends.
pub enum Frames {
    Forged(Box<Forger>),
    /// Frames of a pcap file, replayed in a loop until `Count` are sent.
    Replay(Arc<Vec<Vec<u8>>>),
}

pub struct Job {
    pub source: SourceInterface,
    pub frames: Frames,
    pub count: u64,
    pub interval: Duration,
    pub progress: Arc<Progress>,
}

/// Starts the job's thread; the outcome ends up in `progress.state`.
pub fn spawn(job: Job) {
    let progress = job.progress.clone();
    let name = format!("inject-{}", job.source.ifname);
    let spawned = std::thread::Builder::new().name(name).spawn(move || {
        let p = job.progress.clone();
        let result = run(job);
        let stopped = p.stop.load(Ordering::Relaxed);
        p.finish(match result {
            Err(e) => JobState::Error(e.to_string()),
            Ok(()) if stopped => JobState::Stopped,
            Ok(()) => JobState::Done,
        });
    });
    if let Err(e) = spawned {
        progress.finish(JobState::Error(InterfaceError::Thread(e).to_string()));
    }
}

fn run(mut job: Job) -> Result<(), InterfaceError> {
    let p = job.progress.clone();
    if let Some(ns) = &job.source.netns {
        crate::netns::enter(ns)?;
    }
    let ifname = job.source.ifname.clone();
    let mut cap = pcap::Capture::from_device(ifname.as_str())
        .and_then(|c| c.snaplen(64).buffer_size(64 * 1024).open())
        .map_err(|source| InterfaceError::Open {
            to: "open",
            ifname: ifname.clone(),
            suffix: " to send",
            source,
        })?;
    // Only sent, never read: keep the receive ring empty.
    let _ = cap.filter("ether[0] & 0 != 0", true);
    {
        let mut st = p.state.lock();
        if st.is_over() {
            return Ok(());
        }
        *st = JobState::Running;
    }
    let mut frame = Vec::with_capacity(1514);
    let mut next = Instant::now();
    for i in 0..job.count {
        if p.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let data: &[u8] = match &mut job.frames {
            Frames::Forged(f) => {
                f.next_frame(&mut frame);
                &frame
            }
            Frames::Replay(frames) => &frames[(i % frames.len() as u64) as usize],
        };
        send(&mut cap, data).map_err(|source| InterfaceError::Failed {
            what: "sending",
            ifname: ifname.clone(),
            source,
        })?;
        p.packets.fetch_add(1, Ordering::Relaxed);
        if i + 1 < job.count && !job.interval.is_zero() {
            // Paced from the schedule, not from the end of the previous send.
            next += job.interval;
            loop {
                if p.stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                let now = Instant::now();
                if now >= next {
                    break;
                }
                std::thread::sleep((next - now).min(STOP_CHECK));
            }
        }
    }
    Ok(())
}

/// Sends one frame, retrying a few times when the socket's buffer is full.
fn send(cap: &mut pcap::Capture<pcap::Active>, data: &[u8]) -> Result<(), pcap::Error> {
    let mut attempts = 0;
    loop {
        match cap.sendpacket(data) {
            Err(pcap::Error::PcapError(msg))
                if msg.contains("No buffer space") && attempts < 50 =>
            {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            other => return other,
        }
    }
}
