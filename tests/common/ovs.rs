//! A private Open vSwitch per test (userspace "netdev" datapath, no kernel module):
//! ovsdb-server on a database in a temporary run directory, in the root namespace, and
//! ovs-vswitchd in a network namespace of its own. The userspace datapath creates a tap
//! named `ovs-netdev`, so only one vswitchd can run per namespace: tests running in
//! parallel (or an OVS already on the machine) would otherwise collide. The devices
//! vswitchd makes (bridge and internal-port taps) live in that namespace too, and so must
//! the veths given to it as ports.
//!
//! Both daemons are stopped and the namespace deleted on drop, even when the test failed
//! (the logs are then kept and their directory printed).
//!
//! Requires `ovsdb-server`, `ovs-vswitchd`, `ovs-vsctl`, `ovsdb-tool`, `ovs-appctl`
//! (packages openvswitch-switch, openvswitch-common), `ip` and root. Missing tools make
//! the tests fail with an install hint, never pass silently.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";

/// Panics with an install hint when an Open vSwitch tool is missing.
pub fn require_tools() {
    for tool in [
        "ovsdb-server",
        "ovs-vswitchd",
        "ovs-vsctl",
        "ovsdb-tool",
        "ovs-appctl",
    ] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false)
            || Path::new("/usr/sbin").join(tool).is_file()
            || Path::new("/usr/bin").join(tool).is_file();
        assert!(
            found,
            "`{tool}` not found: install Open vSwitch to run the OVS topology tests \
             (apt-get install --no-install-recommends openvswitch-switch openvswitch-common)"
        );
    }
    assert!(
        Path::new(SCHEMA).is_file(),
        "{SCHEMA} not found: install openvswitch-common"
    );
}

/// Runs a command, panicking with its stderr when it fails; returns its stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A private Open vSwitch (see the module documentation).
pub struct Ovs {
    /// Run directory: database, sockets, pid and log files.
    pub dir: PathBuf,
    /// The namespace ovs-vswitchd runs in.
    pub netns: String,
}

impl Ovs {
    /// Creates the database and starts ovsdb-server (listening on `db.sock` in the run
    /// directory) and ovs-vswitchd.
    pub fn start(tag: &str) -> Ovs {
        require_tools();
        let dir = std::env::temp_dir().join(format!("topotap-ovs-{tag}"));
        std::fs::create_dir_all(&dir).unwrap();
        let netns = format!("topotap-ovs-{tag}");
        run(Command::new("ip").args(["netns", "add", &netns]));
        // From here on, drop cleans up whatever fails next.
        let ovs = Ovs { dir, netns };
        run(ovs
            .cmd("ovsdb-tool")
            .arg("create")
            .arg(ovs.path("conf.db"))
            .arg(SCHEMA));
        ovs.start_server(&["db.sock"]);
        ovs.vsctl_on("db.sock", &["--no-wait", "init"]);
        run(ovs
            .cmd("ip")
            .args(["netns", "exec", &ovs.netns, "ovs-vswitchd"])
            .arg(ovs.address())
            .arg(format!(
                "--pidfile={}",
                ovs.path("ovs-vswitchd.pid").display()
            ))
            .arg("--detach")
            .arg(format!(
                "--log-file={}",
                ovs.path("ovs-vswitchd.log").display()
            ))
            .arg(format!(
                "--unixctl={}",
                ovs.path("ovs-vswitchd.ctl").display()
            ))
            .arg("-vconsole:off"));
        ovs
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The address topotap is given: `unix:<run dir>/db.sock`.
    pub fn address(&self) -> String {
        format!("unix:{}", self.path("db.sock").display())
    }

    /// A command with the OVS environment of this instance.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        for var in ["OVS_RUNDIR", "OVS_LOGDIR", "OVS_DBDIR", "OVS_SYSCONFDIR"] {
            c.env(var, &self.dir);
        }
        c
    }

    /// Starts ovsdb-server on the existing database, listening on the given unix
    /// sockets (file names in the run directory).
    pub fn start_server(&self, sockets: &[&str]) {
        let mut c = self.cmd("ovsdb-server");
        c.arg(self.path("conf.db"));
        for s in sockets {
            c.arg(format!("--remote=punix:{}", self.path(s).display()));
        }
        run(c
            .arg(format!(
                "--pidfile={}",
                self.path("ovsdb-server.pid").display()
            ))
            .arg("--detach")
            .arg(format!(
                "--log-file={}",
                self.path("ovsdb-server.log").display()
            ))
            .arg(format!(
                "--unixctl={}",
                self.path("ovsdb-server.ctl").display()
            ))
            .arg("-vconsole:off"));
    }

    /// Makes the running ovsdb-server also listen on `socket` (run directory).
    pub fn add_remote(&self, socket: &str) {
        run(self
            .cmd("ovs-appctl")
            .arg("-t")
            .arg(self.path("ovsdb-server.ctl"))
            .arg("ovsdb-server/add-remote")
            .arg(format!("punix:{}", self.path(socket).display())));
    }

    /// SIGKILLs ovsdb-server (a crash, not a clean exit) and waits until it is gone.
    pub fn kill_server(&self) {
        if let Some(pid) = self.pid("ovsdb-server.pid") {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            for _ in 0..250 {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        for f in ["ovsdb-server.pid", "ovsdb-server.ctl", "db.sock"] {
            let _ = std::fs::remove_file(self.path(f));
        }
    }

    fn pid(&self, file: &str) -> Option<u32> {
        std::fs::read_to_string(self.path(file))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// `ovs-vsctl ARGS` against `db.sock` (ARGS split on whitespace), waiting for
    /// vswitchd to apply the change.
    pub fn vsctl(&self, args: &str) -> String {
        let args: Vec<&str> = args.split_whitespace().collect();
        self.vsctl_on("db.sock", &args)
    }

    /// `ovs-vsctl ARGS` against the unix socket `socket` of the run directory.
    pub fn vsctl_on(&self, socket: &str, args: &[&str]) -> String {
        run(self
            .cmd("ovs-vsctl")
            .arg(format!("--db=unix:{}", self.path(socket).display()))
            .arg("--timeout=20")
            .args(args))
    }

    /// A bridge on the userspace datapath.
    pub fn add_bridge(&self, name: &str) {
        self.vsctl(&format!(
            "add-br {name} -- set bridge {name} datapath_type=netdev"
        ));
    }

    /// An internal port (a tap made by vswitchd in its namespace) on `bridge`.
    pub fn add_internal_port(&self, bridge: &str, port: &str) {
        self.vsctl(&format!(
            "add-port {bridge} {port} -- set interface {port} type=internal"
        ));
    }

    /// `ip -n <vswitchd namespace> ARGS` (split on whitespace).
    pub fn ip(&self, args: &str) -> String {
        run(Command::new("ip")
            .args(["-n", &self.netns])
            .args(args.split_whitespace()))
    }
}

impl Drop for Ovs {
    fn drop(&mut self) {
        let _ = self
            .cmd("ovs-appctl")
            .arg("-t")
            .arg(self.path("ovs-vswitchd.ctl"))
            .args(["exit", "--cleanup"])
            .output();
        let _ = self
            .cmd("ovs-appctl")
            .arg("-t")
            .arg(self.path("ovsdb-server.ctl"))
            .arg("exit")
            .output();
        for file in ["ovs-vswitchd.pid", "ovsdb-server.pid"] {
            if let Some(pid) = self.pid(file) {
                if Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                }
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .output();
        if std::thread::panicking() {
            // Keep the logs of a failed test.
            let _ = std::fs::remove_file(self.path("conf.db"));
            eprintln!("OVS logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
