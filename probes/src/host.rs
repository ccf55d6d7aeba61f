//! The host node (Skydive §3.3): `Name` = host id, `Type: host`, uname and os-release facts.

use serde_json::Value;
use topotap_topology::{schema, Metadata};

/// `Platform`, `PlatformFamily`, `PlatformVersion` and a pretty `OSName` from the text of
/// `/etc/os-release`.
pub fn os_release_fields(text: &str) -> Vec<(&'static str, String)> {
    let mut id = None;
    let mut id_like = None;
    let mut version = None;
    let mut pretty = None;
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"').trim_matches('\'').to_owned();
        match k.trim() {
            "ID" => id = Some(v),
            "ID_LIKE" => id_like = Some(v),
            "VERSION_ID" => version = Some(v),
            "PRETTY_NAME" => pretty = Some(v),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Some(id) = &id {
        out.push(("Platform", id.clone()));
        let family = id_like
            .as_deref()
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or(id)
            .to_owned();
        out.push(("PlatformFamily", family));
    }
    if let Some(v) = version {
        out.push(("PlatformVersion", v));
    }
    if let Some(p) = pretty {
        out.push(("OSName", p));
    }
    out
}

/// Everything the host node carries, read from this machine.
pub fn host_metadata(host_id: &str) -> Metadata {
    let mut m = Metadata::new();
    m.insert("Name".into(), Value::from(host_id));
    m.insert(
        schema::key::TYPE.into(),
        Value::from(schema::node_type::HOST),
    );
    m.insert("OS".into(), Value::from(std::env::consts::OS));
    if let Ok(u) = nix::sys::utsname::uname() {
        m.insert(
            "Hostname".into(),
            Value::from(u.nodename().to_string_lossy().into_owned()),
        );
        m.insert(
            "KernelVersion".into(),
            Value::from(u.release().to_string_lossy().into_owned()),
        );
        m.insert(
            "Architecture".into(),
            Value::from(u.machine().to_string_lossy().into_owned()),
        );
    }
    let os_release = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .unwrap_or_default();
    for (k, v) in os_release_fields(&os_release) {
        m.insert(k.into(), Value::from(v));
    }
    if let Ok(cmdline) = std::fs::read_to_string("/proc/cmdline") {
        m.insert("KernelCmdLine".into(), Value::from(cmdline.trim()));
    }
    if let Some((system, role)) = virtualization() {
        m.insert("VirtualizationSystem".into(), Value::from(system));
        m.insert("VirtualizationRole".into(), Value::from(role));
    }
    m.insert(
        "TID".into(),
        Value::from(topotap_topology::tid::host(host_id).to_string()),
    );
    m
}

/// A coarse guess, as gopsutil makes it: containers by their marker files, VMs by the
/// `hypervisor` CPU flag.
fn virtualization() -> Option<(&'static str, &'static str)> {
    if std::path::Path::new("/.dockerenv").exists() {
        return Some(("docker", "guest"));
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    cpuinfo
        .lines()
        .any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "hypervisor"))
        .then_some(("kvm", "guest"))
}

/// The machine's host name, the default host id.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_os_release() {
        let text = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n";
        assert_eq!(
            os_release_fields(text),
            vec![
                ("Platform", "debian".to_owned()),
                ("PlatformFamily", "debian".to_owned()),
                ("PlatformVersion", "12".to_owned()),
                ("OSName", "Debian GNU/Linux 12 (bookworm)".to_owned()),
            ]
        );
        let ubuntu = "ID=ubuntu\nID_LIKE=debian\nVERSION_ID=\"22.04\"";
        assert_eq!(
            os_release_fields(ubuntu)[1],
            ("PlatformFamily", "debian".into())
        );
    }

    #[test]
    fn host_metadata_has_skydive_keys() {
        let m = host_metadata("h1");
        assert_eq!(m["Name"], "h1");
        assert_eq!(m["Type"], "host");
        assert_eq!(m["OS"], "linux");
        assert!(m.contains_key("KernelVersion"));
        assert!(m.contains_key("Hostname"));
        assert_eq!(m["TID"], topotap_topology::tid::host("h1").to_string());
    }
}
