//! Stable cross-restart identities (`TID`, Skydive §3.1), all UUIDv5 in the OID namespace.

use crate::Identifier;

/// TID of the host node named `name`.
pub fn host(name: &str) -> Identifier {
    Identifier::v5(name)
}

/// TID of the namespace mounted at `path` on the host with TID `host_tid`.
pub fn netns(host_tid: &Identifier, path: &str) -> Identifier {
    Identifier::v5(&format!("{host_tid}{path}netns"))
}

/// TID of an OVS bridge or port (`kind` = `ovsbridge`/`ovsport`) with OVSDB row `uuid`.
pub fn ovs(host_tid: &Identifier, uuid: &str, kind: &str) -> Identifier {
    Identifier::v5(&format!("{host_tid}{uuid}{kind}"))
}

/// TID of any other node, derived from its ownership parent's TID, its name and type.
pub fn owned(parent_tid: &Identifier, name: &str, kind: &str) -> Identifier {
    Identifier::v5(&format!("{parent_tid}{name}{kind}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tids_are_deterministic_and_distinct() {
        let h = host("h1");
        assert_eq!(h, host("h1"));
        assert_ne!(netns(&h, "/var/run/netns/a"), netns(&h, "/var/run/netns/b"));
        assert_ne!(owned(&h, "eth0", "veth"), owned(&h, "eth0", "device"));
        assert_eq!(ovs(&h, "u", "ovsport"), ovs(&h, "u", "ovsport"));
    }
}
