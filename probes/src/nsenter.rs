//! Opening netlink sockets inside other network namespaces.
//!
//! `setns(CLONE_NEWNET)` changes only the calling thread, so it is done on a fresh OS
//! thread that opens the socket and exits: tokio workers and `spawn_blocking` threads
//! never change namespace. A socket keeps the namespace it was created in, so the
//! connection is then driven by the main runtime (it is registered with the runtime's
//! reactor while the thread is inside `Handle::enter()`).

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;

use futures_channel::mpsc::UnboundedReceiver;
use netlink_packet_core::NetlinkMessage;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::AsyncSocket;
use netlink_sys::SocketAddr;
use nix::sched::CloneFlags;
use rtnetlink::MulticastGroup;

/// A route netlink connection subscribed to the groups the probe follows.
pub struct RouteSocket {
    pub connection: rtnetlink::proto::Connection<RouteNetlinkMessage>,
    pub handle: rtnetlink::Handle,
    pub messages: UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>,
}

const GROUPS: &[MulticastGroup] = &[
    MulticastGroup::Link,
    MulticastGroup::Ipv4Ifaddr,
    MulticastGroup::Ipv6Ifaddr,
    MulticastGroup::Neigh,
    MulticastGroup::Ipv4Route,
    MulticastGroup::Ipv6Route,
];

/// Receive buffer for the multicast socket: a burst of hundreds of links fits.
const RCVBUF: usize = 8 << 20;

/// Opens a subscribed route socket in the current thread's namespace. Must run inside a
/// tokio runtime context.
fn open_here() -> io::Result<RouteSocket> {
    let (mut connection, handle, messages) = rtnetlink::new_multicast_connection(GROUPS)?;
    let socket = connection.socket_mut().socket_mut();
    // As root, SO_RCVBUFFORCE goes past rmem_max; otherwise fall back to SO_RCVBUF.
    if nix::sys::socket::setsockopt(
        &socket.as_fd(),
        nix::sys::socket::sockopt::RcvBufForce,
        &RCVBUF,
    )
    .is_err()
    {
        let _ = socket.set_rx_buf_sz(RCVBUF);
    }
    Ok(RouteSocket {
        connection,
        handle,
        messages,
    })
}

/// Opens a subscribed route socket in the namespace `ns` (`None`: this process' own),
/// entering it on a dedicated short-lived thread.
pub async fn open_route_socket(ns: Option<Arc<File>>) -> io::Result<RouteSocket> {
    let Some(ns) = ns else {
        return open_here();
    };
    let rt = tokio::runtime::Handle::current();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("topotap-setns".into())
        .spawn(move || {
            let result = (|| {
                nix::sched::setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
                let _guard = rt.enter();
                open_here()
            })();
            let _ = tx.send(result);
        })?;
    rx.await
        .map_err(|_| io::Error::other("namespace thread ended without an answer"))?
}

/// A datagram socket of namespace `ns` (`None`: this process' own), for ioctls that act
/// in the socket's namespace (ethtool), created on a dedicated short-lived thread.
pub async fn open_ioctl_socket(ns: Option<Arc<File>>) -> io::Result<std::os::fd::OwnedFd> {
    let Some(ns) = ns else {
        return crate::netlink::ethtool::ioctl_socket();
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("topotap-setns".into())
        .spawn(move || {
            let result = nix::sched::setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)
                .map_err(io::Error::from)
                .and_then(|()| crate::netlink::ethtool::ioctl_socket());
            let _ = tx.send(result);
        })?;
    rx.await
        .map_err(|_| io::Error::other("namespace thread ended without an answer"))?
}

/// A handle on the namespace that `file` (a bind mount of it) names, opened through
/// `/proc/thread-self/ns/net` on a dedicated thread so that it does not keep the bind
/// mount busy: `umount` of a netns file must not fail because topotap watches it.
pub async fn unpinned(file: File) -> io::Result<File> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("topotap-setns".into())
        .spawn(move || {
            let result = nix::sched::setns(file.as_fd(), CloneFlags::CLONE_NEWNET)
                .map_err(io::Error::from)
                .and_then(|()| File::open("/proc/thread-self/ns/net"));
            drop(file);
            let _ = tx.send(result);
        })?;
    rx.await
        .map_err(|_| io::Error::other("namespace thread ended without an answer"))?
}
