//! Captures: Gremlin-selected packet capture on every matching interface.

pub mod counters;
pub mod engine;
pub mod export;
pub mod flows;
pub mod input;
pub mod ovs;
pub mod placer;
pub mod raw;
pub mod resource;
mod wait;

use std::sync::Arc;

use topotap_targets::flow::{FlowTable, FlowTableConfig, LayerKeyMode};
use topotap_targets::packet::{LinkType, Timestamp};

pub use resource::{parse_target, Capture, TargetType};

use topotap_topology::Graph;

use crate::error::Error;
use crate::resources::Resource;

impl Resource for Capture {
    const NAME: &'static str = "capture";
    const TITLE: &'static str = "Capture";

    fn uuid(&self) -> &str {
        &self.uuid
    }

    fn set_uuid(&mut self, uuid: String) {
        self.uuid = uuid;
    }

    fn prepare(&mut self) -> Result<(), Error> {
        self.validate()?;
        self.apply_defaults();
        self.count = 0;
        self.error.clear();
        self.warnings.clear();
        Ok(())
    }

    fn duplicates(&self, other: &Self) -> bool {
        Capture::duplicates(self, other)
    }

    fn export_target(&self) -> Option<&str> {
        let exported = self.target_kind() != TargetType::Local;
        (exported && !self.target.is_empty()).then_some(self.target.as_str())
    }

    /// `Count`: interfaces where this capture is active now, as the placer counts them;
    /// `Error`: why it runs nowhere, if its query failed.
    fn decorate(&mut self, graph: &Graph) {
        self.count = self.active.count(graph);
        self.error = self.active.error().unwrap_or_default();
    }

    /// `Warnings`: the capture's query evaluated on the graph as it is, as the placer
    /// will evaluate it, when it selects no interface to capture on.
    fn annotate_created(&mut self, s: &crate::services::Services) {
        topotap_topology::blocking::section("capture warnings");
        let g = s.graph.read();
        self.warnings = placer::warnings(self, &g, &s.extensions, &s.query_budget);
    }
}

/// What sinks may need besides the capture and its node.
#[derive(Clone, Default)]
pub struct SinkContext {
    pub flows: Arc<flows::FlowRegistry>,
    /// The live graph (interface counters for sFlow counter samples, ifindexes).
    pub graph: topotap_topology::SharedGraph,
    /// Size and timers of the local target's flow tables (server flags).
    pub flow_defaults: FlowTableConfig,
    /// Active and inactive timeouts of the NetFlow v5 and IPFIX exporters.
    pub export_timeouts: topotap_targets::export::pipeline::FlowTimeouts,
    /// sFlow agent address; `None`: the source address of the default route.
    pub sflow_agent: Option<std::net::IpAddr>,
    /// Where exports may go (`--allow-target`).
    pub targets: crate::auth::AllowTargets,
    /// The namespaces a capture may enter (those the probes found).
    pub namespaces: crate::auth::netns::KnownNamespaces,
    /// The ovsdb-server that `ovssflow` and `ovsmirror` captures configure (the OVSDB
    /// probe's); `None`: those captures fail.
    pub ovsdb: Option<Arc<ovs::Ovsdb>>,
    /// Where the `local` flow tables (captures and pcap uploads) send their snapshots
    /// for the history (`None`: history off).
    pub flow_history: Option<crate::history::flows::FlowRecorder>,
}

/// Builds the sink for a capture on one node, by its target type. Export sockets are
/// opened here, in topotap's own namespace, before the capture thread enters the
/// interface's.
pub fn sink_for(
    capture: &Capture,
    target: &placer::Target,
    ctx: &SinkContext,
) -> Result<Box<dyn engine::PacketSink>, Error> {
    // What is left to fail once a capture is valid is the environment: a name that does
    // not resolve, a socket that cannot be opened (`Unavailable`).
    let open = Error::from;
    if let Some(ns) = &target.netns {
        ctx.namespaces.check(ns).map_err(Error::forbidden)?;
    }
    if capture.target_kind() != TargetType::Local {
        ctx.targets
            .check_target(&capture.target)
            .map_err(Error::forbidden)?;
    }
    if target.via == placer::Via::OvsSflow && capture.target_kind() == TargetType::Sflow {
        // Open vSwitch sends to the collector itself.
        return Ok(Box::new(NullSink));
    }
    match capture.target_kind() {
        TargetType::Local => Ok(local_sink(capture, target, ctx, false)),
        TargetType::Sflow => Ok(Box::new(
            export::sflow::SflowSink::open(capture, target, ctx).map_err(open)?,
        )),
        TargetType::ErspanV1 => Ok(Box::new(
            export::erspan::ErspanSink::open(
                capture,
                target,
                topotap_targets::export::erspan::ErspanVersion::TypeII,
            )
            .map_err(open)?,
        )),
        TargetType::ErspanV2 => Ok(Box::new(
            export::erspan::ErspanSink::open(
                capture,
                target,
                topotap_targets::export::erspan::ErspanVersion::TypeIII,
            )
            .map_err(open)?,
        )),
        TargetType::NetflowV5 => Ok(Box::new(
            export::netflow::NetflowSink::open(capture, target, ctx.export_timeouts)
                .map_err(open)?,
        )),
        TargetType::Ipfix => Ok(Box::new(
            export::ipfix::IpfixSink::open(capture, target, ctx.export_timeouts).map_err(open)?,
        )),
    }
}

/// A flow table for `capture` on `target`, registered for `Flows()`; `retain` keeps it
/// queryable after the capture ends (pcap uploads).
pub fn local_sink(
    capture: &Capture,
    target: &placer::Target,
    ctx: &SinkContext,
    retain: bool,
) -> Box<dyn engine::PacketSink> {
    let config = FlowTableConfig {
        capture_id: capture.uuid.clone(),
        node_tid: target.tid.clone(),
        layer_key_mode: if capture.layer_key_mode == "L3" {
            LayerKeyMode::L3
        } else {
            LayerKeyMode::L2
        },
        ..ctx.flow_defaults.clone()
    };
    let source = Arc::new(flows::FlowSource::new(
        target.node.clone(),
        capture.uuid.clone(),
        FlowTable::new(config),
    ));
    ctx.flows.add(source.clone());
    Box::new(flows::LocalSink {
        source,
        registry: ctx.flows.clone(),
        retain,
        raw_limit: capture.raw_packet_limit.clamp(0, raw::MAX_RAW_PACKET_LIMIT) as u8,
        // A pcap upload's flows too, on the file's clock.
        history: ctx.flow_history.clone(),
    })
}

/// The sink of a capture whose packets topotap never sees.
struct NullSink;

impl engine::PacketSink for NullSink {
    fn packet(&mut self, _: LinkType, _: Timestamp, _: u32, _: &[u8]) {}
    fn tick(&mut self, _: Timestamp) {}
    fn finish(&mut self, _: Timestamp) {}
}

/// Opens the input of a capture that is not libpcap on its interface: a socket on
/// loopback (`sflow`: `Port`, 6343 by default; `pcapsocket`: `Port`, an ephemeral port
/// by default), or a configuration in Open vSwitch with what reads its output
/// (`ovssflow`: a collector socket on an ephemeral loopback port in vswitchd's
/// namespace, unless the capture's sFlow target receives it directly; `ovsmirror`: the
/// mirror's output port, captured with libpcap). Blocks.
pub fn open_input(
    capture: &Capture,
    target: &placer::Target,
    ctx: &SinkContext,
) -> Result<engine::Opened, Error> {
    use engine::{Input, Opened};
    use std::net::{Ipv4Addr, TcpListener, UdpSocket};
    let port = capture.listen_port();
    let cannot = |what: &str, e: std::io::Error| {
        Error::unavailable(format!("cannot listen for {what} on 127.0.0.1:{port}: {e}"))
    };
    let ovsdb = || {
        ctx.ovsdb.clone().ok_or_else(|| {
            Error::unavailable(format!(
                "an {} capture needs the OVSDB probe (--ovsdb)",
                target.via.engine(capture)
            ))
        })
    };
    let counter_writer = || counters::CounterWriter {
        graph: ctx.graph.clone(),
        node: target.node.clone(),
    };
    match &target.via {
        placer::Via::Interface => Err(Error::internal("an interface capture has no socket")),
        placer::Via::Sflow => UdpSocket::bind((Ipv4Addr::LOCALHOST, port))
            .map(|s| Opened::new(Input::Sflow(s, Some(counter_writer()))))
            .map_err(|e| cannot("sFlow", e)),
        placer::Via::PcapSocket => TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .map(|l| Opened::new(Input::PcapSocket(l)))
            .map_err(|e| cannot("pcap streams", e)),
        placer::Via::OvsSflow => {
            let ovsdb = ovsdb()?;
            if capture.target_kind() == TargetType::Sflow {
                let (host, port) = parse_target(&capture.target).map_err(Error::invalid)?;
                let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or_else(|| Error::unavailable(format!("cannot resolve {host}")))?;
                let guard = ovsdb.add_sflow(capture, &target.ifname, &addr.to_string())?;
                return Ok(Opened::new(Input::Nothing).guarded(guard));
            }
            let socket = in_netns(target.netns.clone(), || {
                UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            })?
            .map_err(|e| cannot("sFlow", e))?;
            let local = socket.local_addr().map_err(|e| cannot("sFlow", e))?;
            let guard = ovsdb.add_sflow(capture, &target.ifname, &local.to_string())?;
            Ok(Opened::new(Input::Sflow(socket, Some(counter_writer()))).guarded(guard))
        }
        placer::Via::OvsMirror { bridge, port } => {
            let guard = ovsdb()?.add_mirror(capture, bridge, port, &target.ifname)?;
            Ok(
                // The placer fills in the capture of the mirror's output port.
                Opened::new(Input::Interface(engine::CaptureSpec {
                    ifname: target.ifname.clone(),
                    netns: target.netns.clone(),
                    bpf: String::new(),
                    snaplen: capture.snaplen(),
                    mirror: true,
                }))
                .guarded(guard),
            )
        }
    }
}

/// Runs `f` on a fresh thread in the namespace `netns` (topotap's own if `None`): a
/// socket opened there stays in it.
fn in_netns<T: Send + 'static>(
    netns: Option<std::path::PathBuf>,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Error> {
    let Some(ns) = netns else { return Ok(f()) };
    std::thread::spawn(move || {
        crate::netns::enter(&ns).map_err(|e| Error::unavailable(e.to_string()))?;
        Ok(f())
    })
    .join()
    .unwrap_or_else(|_| Err(Error::internal("namespace thread panicked")))
}
