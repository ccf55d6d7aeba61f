//! Interface facts from the ethtool ioctl (`SIOCETHTOOL`): driver and bus (`GDRVINFO`),
//! link speed and duplex (`GSET`), offload features (`GSSET_INFO`/`GSTRINGS`/
//! `GFEATURES`), as Skydive keys `Driver`, `BusInfo`, `Speed`, `Duplex`, `Features`.
//!
//! The calls block, so they run on blocking threads; they use a datagram socket opened
//! in the interface's namespace (an ioctl on a socket acts in the socket's namespace),
//! so the calling thread never changes namespace.
//!
//! The ioctls take raw kernel structs, hence `unsafe`, confined to this module: each
//! buffer is sized for its command and the struct layouts are checked by a test.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use serde_json::{Map, Value};

use super::translate::Fields;

/// Keys this module sets (absent facts are removed).
pub const FACT_KEYS: &[&str] = &["Driver", "BusInfo", "Speed", "Duplex", "Features"];

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GSET: u32 = 0x1;
const ETHTOOL_GDRVINFO: u32 = 0x3;
const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETHTOOL_GFEATURES: u32 = 0x3a;
const ETH_SS_FEATURES: u32 = 4;
const ETH_GSTRING_LEN: usize = 32;
/// `SPEED_UNKNOWN` as the 32-bit value the kernel reports.
const SPEED_UNKNOWN: u32 = u32::MAX;
/// Upper bound on the feature count accepted from the kernel (it has ~70).
const MAX_FEATURES: u32 = 1024;

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

#[repr(C)]
struct IfReqIndex {
    name: [u8; libc::IFNAMSIZ],
    index: libc::c_int,
    _pad: [u8; 20],
}

#[repr(C)]
#[derive(Default)]
struct EthtoolCmd {
    cmd: u32,
    supported: u32,
    advertising: u32,
    speed: u16,
    duplex: u8,
    port: u8,
    phy_address: u8,
    transceiver: u8,
    autoneg: u8,
    mdio_support: u8,
    maxtxpkt: u32,
    maxrxpkt: u32,
    speed_hi: u16,
    eth_tp_mdix: u8,
    eth_tp_mdix_ctrl: u8,
    lp_advertising: u32,
    reserved: [u32; 2],
}

#[repr(C)]
struct DrvInfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

/// What ethtool says about one interface.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Facts {
    pub driver: Option<String>,
    pub bus_info: Option<String>,
    /// Mb/s.
    pub speed: Option<u32>,
    /// `Full` or `Half`, as `ethtool` prints it.
    pub duplex: Option<&'static str>,
    pub features: Option<Map<String, Value>>,
}

impl Facts {
    /// The metadata fields; `Driver` is only given when known, so the netlink kind's
    /// default (`bridge`, `veth`, ...) stays otherwise.
    pub fn fields(&self) -> Fields {
        let mut f: Fields = Vec::with_capacity(5);
        if let Some(d) = &self.driver {
            f.push(("Driver", Some(Value::from(d.clone()))));
        }
        f.push(("BusInfo", self.bus_info.clone().map(Value::from)));
        f.push(("Speed", self.speed.map(Value::from)));
        f.push(("Duplex", self.duplex.map(Value::from)));
        f.push(("Features", self.features.clone().map(Value::Object)));
        f
    }
}

fn c_string(bytes: &[u8]) -> Option<String> {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    let s = String::from_utf8_lossy(&bytes[..end]).into_owned();
    (!s.is_empty()).then_some(s)
}

/// An `AF_INET` datagram socket of the calling thread's namespace, for the ioctls.
pub fn ioctl_socket() -> io::Result<OwnedFd> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(io::Error::from)
}

/// The current name of interface `index` in the socket's namespace.
fn name_of(sock: &OwnedFd, index: u32) -> io::Result<[u8; libc::IFNAMSIZ]> {
    let mut req = IfReqIndex {
        name: [0; libc::IFNAMSIZ],
        index: index as libc::c_int,
        _pad: [0; 20],
    };
    // SAFETY: SIOCGIFNAME reads and writes a `struct ifreq`, which `IfReqIndex` matches
    // in layout and size (40 bytes).
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFNAME as _, &mut req) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(req.name)
}

/// One `SIOCETHTOOL` call with `data` as the command buffer.
///
/// # Safety
/// `data` must point to a buffer the command `cmd` (its first u32) may fill entirely.
unsafe fn ethtool(
    sock: &OwnedFd,
    name: &[u8; libc::IFNAMSIZ],
    data: *mut libc::c_void,
) -> io::Result<()> {
    let mut req = IfReq {
        name: *name,
        data,
        _pad: [0; 16],
    };
    // SAFETY: `req` is a `struct ifreq` whose `ifr_data` points to a buffer the caller
    // sized for its command.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL as _, &mut req) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn features(sock: &OwnedFd, name: &[u8; libc::IFNAMSIZ]) -> io::Result<Map<String, Value>> {
    // struct ethtool_sset_info: cmd, reserved, u64 sset_mask, then one u32 per set.
    let mut info = [0u32; 5];
    info[0] = ETHTOOL_GSSET_INFO;
    let mask: u64 = 1 << ETH_SS_FEATURES;
    info[2] = mask as u32;
    info[3] = (mask >> 32) as u32;
    // SAFETY: one set requested: the kernel writes one u32 after the 16-byte header.
    unsafe { ethtool(sock, name, info.as_mut_ptr().cast())? };
    let count = info[4];
    if count == 0 || count > MAX_FEATURES {
        return Err(io::Error::other(format!("feature count {count}")));
    }
    let n = count as usize;
    // struct ethtool_gstrings: cmd, string_set, len, then len * 32 bytes.
    let mut strings = vec![0u32; 3 + n * ETH_GSTRING_LEN / 4];
    strings[0] = ETHTOOL_GSTRINGS;
    strings[1] = ETH_SS_FEATURES;
    strings[2] = count;
    // SAFETY: the buffer holds `count` strings after the header.
    unsafe { ethtool(sock, name, strings.as_mut_ptr().cast())? };
    // struct ethtool_gfeatures: cmd, size, then size * {available, requested, active,
    // never_changed}.
    let blocks = n.div_ceil(32);
    let mut feats = vec![0u32; 2 + blocks * 4];
    feats[0] = ETHTOOL_GFEATURES;
    feats[1] = blocks as u32;
    // SAFETY: the buffer holds `blocks` feature blocks after the header.
    unsafe { ethtool(sock, name, feats.as_mut_ptr().cast())? };
    let bytes: Vec<u8> = strings[3..].iter().flat_map(|w| w.to_ne_bytes()).collect();
    let mut out = Map::new();
    for i in 0..n {
        let Some(fname) = c_string(&bytes[i * ETH_GSTRING_LEN..(i + 1) * ETH_GSTRING_LEN]) else {
            continue;
        };
        let active = feats[2 + (i / 32) * 4 + 2];
        out.insert(fname, Value::from(active & (1 << (i % 32)) != 0));
    }
    Ok(out)
}

/// Reads the facts of interface `index` through `sock` (blocking). An interface gone
/// meanwhile is an error; a fact the driver does not give is left out.
pub fn read(sock: &OwnedFd, index: u32) -> io::Result<Facts> {
    let name = name_of(sock, index)?;
    let mut facts = Facts::default();
    // SAFETY: all-zero bytes are a valid `DrvInfo` (integers and byte arrays).
    let mut drv: DrvInfo = unsafe { std::mem::zeroed() };
    drv.cmd = ETHTOOL_GDRVINFO;
    // SAFETY: GDRVINFO fills a `struct ethtool_drvinfo`, which `DrvInfo` matches.
    if unsafe { ethtool(sock, &name, (&mut drv as *mut DrvInfo).cast()) }.is_ok() {
        facts.driver = c_string(&drv.driver);
        facts.bus_info = c_string(&drv.bus_info);
    }
    let mut cmd = EthtoolCmd {
        cmd: ETHTOOL_GSET,
        ..Default::default()
    };
    // SAFETY: GSET fills a `struct ethtool_cmd`, which `EthtoolCmd` matches.
    if unsafe { ethtool(sock, &name, (&mut cmd as *mut EthtoolCmd).cast()) }.is_ok() {
        let speed = u32::from(cmd.speed) | (u32::from(cmd.speed_hi) << 16);
        facts.speed = (speed != SPEED_UNKNOWN && speed != 0).then_some(speed);
        facts.duplex = match cmd.duplex {
            0 => Some("Half"),
            1 => Some("Full"),
            _ => None,
        };
    }
    facts.features = features(sock, &name).ok();
    Ok(facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_sizes_match_the_kernel() {
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
        assert_eq!(std::mem::size_of::<IfReqIndex>(), 40);
        assert_eq!(std::mem::size_of::<EthtoolCmd>(), 44);
        assert_eq!(std::mem::size_of::<DrvInfo>(), 196);
    }

    #[test]
    fn loopback_has_features_and_no_driver() {
        let sock = ioctl_socket().unwrap();
        let f = read(&sock, 1).unwrap();
        // `ethtool -i lo` fails: loopback has no driver info; it does have features.
        assert_eq!(f.driver, None);
        let feats = f.features.unwrap();
        assert_eq!(feats.get("loopback"), Some(&Value::from(true)));
    }
}
