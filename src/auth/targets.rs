//! Where captures may export and injections may send (`--allow-target CIDR`).

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use ipnet::IpNet;

/// A `--allow-target` value that is neither a CIDR nor an address.
#[derive(Debug, thiserror::Error)]
#[error("--allow-target {0:?}: not a CIDR such as 10.0.0.0/8")]
pub struct BadCidr(pub String);

/// A target outside `--allow-target` (a 403): what was refused, and the reason naming
/// the allowed networks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(String);

/// The networks exports and injections may reach.
#[derive(Clone, Debug, Default)]
pub enum AllowTargets {
    /// Anything: only when authentication is off and the API listens on loopback (and
    /// in tests that build services without flags).
    #[default]
    Everything,
    /// These networks (possibly none).
    Only(Vec<IpNet>),
}

impl AllowTargets {
    pub fn parse(list: &[String]) -> Result<Vec<IpNet>, BadCidr> {
        list.iter()
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| BadCidr(s.clone()))
            })
            .collect()
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        match self {
            AllowTargets::Everything => true,
            AllowTargets::Only(nets) => {
                let ip = match ip {
                    IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
                    v4 => v4,
                };
                nets.iter().any(|n| n.contains(&ip))
            }
        }
    }

    /// The 403 for `what` (an address, or a name and what it resolved to).
    fn refusal(&self, what: &str) -> Refused {
        Refused(match self {
            AllowTargets::Everything => String::new(),
            AllowTargets::Only(nets) if nets.is_empty() => format!(
                "{what} is outside --allow-target (none given: exports and injections need \
                 --allow-target when authentication is on or the API listens beyond loopback)"
            ),
            AllowTargets::Only(nets) => {
                let list: Vec<String> = nets.iter().map(ToString::to_string).collect();
                format!("{what} is outside --allow-target {}", list.join(", "))
            }
        })
    }

    /// Checks an address.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Refused> {
        if self.allows(ip) {
            Ok(())
        } else {
            Err(self.refusal(&ip.to_string()))
        }
    }

    /// Checks an export target, `host:port` (a name resolves here; every address it
    /// resolves to must be allowed). An unparsable target is left to the caller's own
    /// validation.
    pub fn check_target(&self, target: &str) -> Result<(), Refused> {
        if matches!(self, AllowTargets::Everything) || target.is_empty() {
            return Ok(());
        }
        let addrs: Vec<SocketAddr> = match target.to_socket_addrs() {
            Ok(a) => a.collect(),
            Err(_) => match target.parse::<IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, 0)],
                Err(_) => return Err(self.refusal(&format!("target {target:?} (unresolved)"))),
            },
        };
        if addrs.is_empty() {
            return Err(self.refusal(&format!("target {target:?} (unresolved)")));
        }
        for a in addrs {
            if !self.allows(a.ip()) {
                return Err(self.refusal(&format!("target {target} ({})", a.ip())));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_addresses_and_names() {
        let nets = AllowTargets::parse(&["127.0.0.0/8".into(), "fd00::1".into()]).unwrap();
        let allow = AllowTargets::Only(nets);
        assert!(allow.check_target("127.0.0.1:2055").is_ok());
        assert!(allow.check_target("localhost:2055").is_ok());
        assert!(allow.check_ip("fd00::1".parse().unwrap()).is_ok());
        assert!(allow.check_ip("::ffff:127.0.0.9".parse().unwrap()).is_ok());
        let err = allow.check_target("198.51.100.7:2055").unwrap_err();
        assert_eq!(
            err.to_string(),
            "target 198.51.100.7:2055 (198.51.100.7) is outside --allow-target 127.0.0.0/8, fd00::1/128"
        );
        let none = AllowTargets::Only(vec![]);
        assert!(none
            .check_ip("127.0.0.1".parse().unwrap())
            .unwrap_err()
            .to_string()
            .contains("none given"));
        assert!(AllowTargets::Everything
            .check_target("198.51.100.7:1")
            .is_ok());
        assert!(AllowTargets::parse(&["10.0.0.0/33".into()])
            .unwrap_err()
            .to_string()
            .contains("not a CIDR"));
    }
}
