//! Real network fixtures for tests: namespaces, veth pairs and bridges with unique
//! names, removed on drop even when the test fails.
#![allow(dead_code)]

use std::process::Command;

/// Runs a shell command, panicking with its output when it fails.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", cmd])
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a shell command, ignoring failure (cleanup).
pub fn sh_quiet(cmd: &str) {
    let _ = Command::new("sh").args(["-c", cmd]).output();
}

/// Things to delete at the end of a test, in reverse order of creation.
#[derive(Default)]
pub struct Cleanup {
    commands: Vec<String>,
}

impl Cleanup {
    pub fn new() -> Self {
        Self::default()
    }

    /// A namespace `name`, deleted at the end.
    pub fn netns(&mut self, name: &str) {
        sh(&format!("ip netns add {name}"));
        self.commands.push(format!("ip netns del {name}"));
        sh(&format!("ip -n {name} link set lo up"));
    }

    /// A link in the root namespace, deleted at the end (deleting one end of a veth
    /// deletes both).
    pub fn link(&mut self, name: &str) {
        self.commands.push(format!("ip link del {name}"));
    }

    /// Any command to run at the end.
    pub fn defer(&mut self, cmd: impl Into<String>) {
        self.commands.push(cmd.into());
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in self.commands.iter().rev() {
            sh_quiet(c);
        }
    }
}

/// Two namespaces `<p>a` and `<p>b`, each with `eth0` (10.77.x.1 and .2/24) joined by
/// the Linux bridge `<p>br` in the root namespace. Returns the cleanup guard.
pub fn bridged_pair(p: &str, subnet: u8) -> Cleanup {
    let mut c = Cleanup::new();
    c.netns(&format!("{p}a"));
    c.netns(&format!("{p}b"));
    sh(&format!(
        "ip link add {p}br type bridge && ip link set {p}br up"
    ));
    c.link(&format!("{p}br"));
    for (side, host) in [("a", 1), ("b", 2)] {
        let ns = format!("{p}{side}");
        let root_end = format!("{p}{side}0");
        sh(&format!(
            "ip link add {root_end} type veth peer name eth0 netns {ns} && \
             ip link set {root_end} master {p}br up && \
             ip -n {ns} addr add 10.77.{subnet}.{host}/24 dev eth0 && \
             ip -n {ns} link set eth0 up"
        ));
        c.link(&root_end);
    }
    c
}

/// Two namespaces `<p>a` and `<p>b` joined by a veth pair (`eth0` on both sides,
/// `<net>.1` and `<net>.2`/24), quiet: no IPv6 (no router or neighbour solicitations),
/// static neighbours (no ARP). Returns the guard and the two MACs.
pub fn quiet_pair(p: &str, net: &str) -> (Cleanup, String, String) {
    let mut c = Cleanup::new();
    let (a, b) = (format!("{p}a"), format!("{p}b"));
    for ns in [&a, &b] {
        c.netns(ns);
        // No IPv6 chatter, and no forwarding: a new namespace inherits IPv4
        // forwarding from the host's, and a forwarding `b` would bounce the datagrams
        // sent to an address it does not own back to `a` with an ICMP redirect.
        sh(&format!(
            "ip netns exec {ns} sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
             net.ipv6.conf.default.disable_ipv6=1 net.ipv4.ip_forward=0"
        ));
    }
    sh(&format!(
        "ip -n {a} link add eth0 type veth peer name eth0 netns {b}"
    ));
    let mac = |ns: &str| {
        sh(&format!(
            "ip netns exec {ns} cat /sys/class/net/eth0/address"
        ))
        .trim()
        .to_owned()
    };
    let (mac_a, mac_b) = (mac(&a), mac(&b));
    for (ns, host, peer, peer_mac) in [(&a, 1, 2, &mac_b), (&b, 2, 1, &mac_a)] {
        sh(&format!(
            "ip -n {ns} addr add {net}.{host}/24 dev eth0 && \
             ip -n {ns} neigh add {net}.{peer} lladdr {peer_mac} dev eth0 nud permanent && \
             ip -n {ns} link set eth0 up"
        ));
    }
    (c, mac_a, mac_b)
}
