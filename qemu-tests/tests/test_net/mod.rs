//! An IPv6-only network for a guest, made by the test inside a network
//! namespace: a bridge whose address is the router, `radvd` advertising a
//! ULA prefix (SLAAC, default route), and `chronyd` serving NTP on the
//! router's address. No IPv4 anywhere. The guest's tap device joins the
//! bridge once QEMU has made it. Works for both harness backends (QEMU in
//! a container enters the same namespace).

#![allow(dead_code)] // each test binary uses a different part

use qemu_tests::{Backend, MachineConfig, Needle, NetNs, Network, Vm, skip};
use std::net::{Ipv6Addr, SocketAddrV6, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The advertised prefix (a ULA: fd42:7669:6e79 spells "Bviny" badly, and
/// is nobody's).
pub const PREFIX: &str = "fd42:7669:6e79:1";
/// The router's address: radvd, chrony and the host-side clients use it.
pub const ROUTER: &str = "fd42:7669:6e79:1::1";
/// The bridge the guest's tap device joins.
pub const BRIDGE: &str = "br0";
const TAP: &str = "tap0";

/// Host programs this network needs, and the package of each.
pub const PROGRAMS: &[(&str, &str)] = &[
    ("radvd", "radvd"),
    ("chronyd", "chrony"),
    ("dig", "bind9-dnsutils"),
    ("ssh", "openssh-client"),
    ("curl", "curl"),
    ("ping", "iputils-ping"),
    ("ffmpeg", "ffmpeg"),
];

/// Programs of [`PROGRAMS`] missing on this host, as an install command.
pub fn missing_programs() -> Option<String> {
    let missing: Vec<&str> = PROGRAMS
        .iter()
        .filter(|(program, _)| {
            !["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
                .iter()
                .any(|dir| std::path::Path::new(dir).join(program).exists())
        })
        .map(|(_, package)| *package)
        .collect();
    (!missing.is_empty()).then(|| format!("apt-get install {}", missing.join(" ")))
}

/// Whether test `name` on this network runs, and on which backend:
/// `backend`, or else `QEMU_TESTS_BACKEND`'s. Needs what every boot test
/// needs ([`crate::test_image::prerequisites_or_skip`]), the network's
/// programs and a ready backend; a local run skips with the reason, CI fails.
pub fn ready(name: &str, backend: Option<Backend>) -> Option<Backend> {
    if !crate::test_image::prerequisites_or_skip(name) {
        return None;
    }
    let missing = missing_programs().map(|install| format!("the test network needs: {install}"));
    if !test_support::require(name, missing) {
        return None;
    }
    let backend = match backend {
        Some(backend) => backend,
        None => skip::required(Backend::from_env())?,
    };
    skip::backend_ready(backend).then_some(backend)
}

/// The running network; its daemons and namespace go when it is dropped.
pub struct TestNet {
    daemons: Vec<Child>,
    dir: PathBuf,
    netns: NetNs,
}

impl TestNet {
    /// Creates the namespace `name`, the bridge and the daemons.
    pub fn start(name: &str) -> TestNet {
        if let Some(install) = missing_programs() {
            panic!("the test network needs: {install}");
        }
        let netns = NetNs::create(name).expect("creating the network namespace");
        let dir = builder::config::Project::from_workspace()
            .root
            .join("target/qemu-tests/net")
            .join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ip = |args: &[&str]| netns.ip(args).expect("configuring the test network");
        ip(&["link", "set", "lo", "up"]);
        // No multicast snooping: mDNS to ff02::fb reaches every port, as on
        // a home switch.
        ip(&[
            "link",
            "add",
            BRIDGE,
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        ip(&[
            "addr",
            "add",
            &format!("{ROUTER}/64"),
            "dev",
            BRIDGE,
            "nodad",
        ]);
        ip(&["link", "set", BRIDGE, "up"]);
        // A router forwards (radvd wants that), though nothing goes beyond.
        netns
            .exec("sysctl", &["-q", "-w", "net.ipv6.conf.all.forwarding=1"])
            .unwrap();
        let mut net = TestNet {
            daemons: Vec::new(),
            dir,
            netns,
        };
        net.start_radvd();
        net.start_chrony();
        net
    }

    fn spawn(&mut self, what: &str, argv: &[&str]) {
        let log = std::fs::File::create(self.dir.join(format!("{what}.log"))).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", self.netns.name()])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what}: {e}"));
        self.daemons.push(child);
    }

    fn start_radvd(&mut self) {
        let config = self.dir.join("radvd.conf");
        std::fs::write(
            &config,
            format!(
                "interface {BRIDGE} {{\n  AdvSendAdvert on;\n  MinRtrAdvInterval 3;\n  MaxRtrAdvInterval 10;\n  prefix {PREFIX}::/64 {{\n    AdvOnLink on;\n    AdvAutonomous on;\n  }};\n}};\n"
            ),
        )
        .unwrap();
        let pid = self.dir.join("radvd.pid");
        let (config, pid) = (config.display().to_string(), pid.display().to_string());
        self.spawn(
            "radvd",
            &[
                "radvd",
                "--nodaemon",
                "--config",
                &config,
                "--pidfile",
                &pid,
                "--logmethod",
                "stderr",
            ],
        );
    }

    fn start_chrony(&mut self) {
        // Serves this host's clock (stratum 1, no upstream), only on the
        // router's IPv6 address; never touches the host's clock (-x).
        let config = self.dir.join("chrony.conf");
        std::fs::write(
            &config,
            format!(
                "local stratum 1\nallow all\nbindaddress {ROUTER}\nport 123\ncmdport 0\npidfile {}\n",
                self.dir.join("chronyd.pid").display()
            ),
        )
        .unwrap();
        let config = config.display().to_string();
        self.spawn("chronyd", &["chronyd", "-d", "-x", "-f", &config]);
    }

    /// The guest's network card: a tap in this namespace with `mac`.
    pub fn network(&self, mac: &str) -> Network {
        Network::Tap {
            netns: self.netns.name().into(),
            tap: TAP.into(),
            mac: mac.into(),
        }
    }

    /// Starts `config`'s machine with its network card (`mac`) on this
    /// network.
    pub fn boot(&self, config: MachineConfig, mac: &str) -> Vm {
        let vm = Vm::start(config.with_network(self.network(mac))).unwrap();
        self.attach_guest();
        vm
    }

    /// Puts the guest's tap device (made by QEMU when it starts) on the bridge.
    pub fn attach_guest(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.netns.ip(&["link", "show", TAP]).is_err() {
            assert!(Instant::now() < deadline, "QEMU made no {TAP} within 60 s");
            std::thread::sleep(Duration::from_millis(200));
        }
        self.netns
            .ip(&["link", "set", TAP, "master", BRIDGE, "up"])
            .unwrap();
    }

    /// Takes the guest's tap down (the cable pulled: the guest's frames go
    /// nowhere, nothing tells it) or brings it back up.
    pub fn set_guest_link(&self, up: bool) {
        self.netns
            .ip(&["link", "set", TAP, if up { "up" } else { "down" }])
            .unwrap();
    }

    /// Runs `program args…` in the namespace (the host side of the
    /// network); returns (success, stdout + stderr).
    pub fn run(&self, program: &str, args: &[&str]) -> (bool, String) {
        let output = Command::new("ip")
            .args(["netns", "exec", self.netns.name(), program])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {program}: {e}"));
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        (output.status.success(), text)
    }

    /// A command that runs `program` in the namespace, for a client that
    /// lives longer than [`TestNet::run`] waits (a stream listener).
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", self.netns.name(), program]);
        command
    }

    /// The directory of the network's logs and configuration.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The bridge's interface index (a numeric zone for link-local and
    /// multicast addresses, e.g. `ff02::fb%3`, which every tool accepts).
    pub fn bridge_index(&self) -> u32 {
        let (ok, out) = self.run("cat", &[&format!("/sys/class/net/{BRIDGE}/ifindex")]);
        assert!(ok, "reading the bridge's index: {out}");
        out.trim().parse().unwrap()
    }

    /// Asks for `host`'s IPv6 addresses the way a computer on the LAN does:
    /// an mDNS query (RFC 6762) from port 5353 to ff02::fb on the bridge,
    /// answers read from the multicast group, repeated each second until
    /// one comes or `timeout` passes. Runs on a thread moved into the
    /// namespace.
    pub fn mdns_lookup(&self, host: &str, timeout: Duration) -> Result<Vec<Ipv6Addr>, String> {
        let netns = crate::test_net::netns_file(self.netns.name());
        let index = self.bridge_index();
        let host = host.to_string();
        std::thread::spawn(move || mdns_lookup_in(&netns, index, &host, timeout))
            .join()
            .map_err(|_| "the mDNS thread panicked".to_string())?
    }

    /// The log of a daemon (`radvd`, `chronyd`), for failure messages.
    pub fn log(&self, what: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{what}.log"))).unwrap_or_default()
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        for child in &mut self.daemons {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// vinyl-streamd's `/status` on the guest at `address`, fetched from the
/// host side over IPv6.
pub fn streamd_status(net: &TestNet, address: &str) -> Result<serde_json::Value, String> {
    let url = format!("http://[{address}]:8000/status");
    let (ok, out) = net.run("curl", &["-sS", "-g", "--max-time", "10", &url]);
    if !ok {
        return Err(out);
    }
    serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))
}

/// `vinyl-update status --json` in the guest, through its shell.
pub fn update_status(vm: &mut Vm) -> Result<serde_json::Value, String> {
    let out = vm
        .run_ok("vinyl-update status --json", Duration::from_secs(60))
        .map_err(|e| e.to_string())?;
    serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))
}

/// The guest's address as its console announces it (`vinyl: address …`),
/// the next announcement after what earlier waits matched.
pub fn announced_address(vm: &Vm, timeout: Duration) -> String {
    try_announced_address(vm, timeout).unwrap()
}

/// [`announced_address`], or why there was none.
pub fn try_announced_address(vm: &Vm, timeout: Duration) -> Result<String, String> {
    // The character after the address must have arrived: a match on a line
    // still being written would cut the address short.
    let line = vm
        .wait_for_console(
            Needle::regex(r"vinyl: address [0-9a-f:]+[^0-9a-f:]"),
            timeout,
        )
        .map_err(|e| e.to_string())?;
    // The kernel may print onto the same console line right after the
    // address (no newline in between): take only the address's characters.
    Ok(line
        .split_once("vinyl: address ")
        .map(|(_, rest)| rest)
        .unwrap_or_default()
        .chars()
        .take_while(|c| c.is_ascii_hexdigit() || *c == ':')
        .collect())
}

/// Polls `check` every 2 s until it returns `Ok`, or panics with `what`
/// and the last error seen.
pub fn eventually<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("{what} did not happen within {timeout:?}; last: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_secs(2)),
        }
    }
}

fn netns_file(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

const MDNS_GROUP: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0xfb);

fn mdns_lookup_in(
    netns: &std::path::Path,
    index: u32,
    host: &str,
    timeout: Duration,
) -> Result<Vec<Ipv6Addr>, String> {
    use std::os::fd::AsFd;
    let file = std::fs::File::open(netns).map_err(|e| format!("{}: {e}", netns.display()))?;
    rustix::thread::move_into_link_name_space(
        file.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .map_err(|e| format!("entering {}: {e}", netns.display()))?;
    let socket = UdpSocket::bind("[::]:5353").map_err(|e| format!("binding port 5353: {e}"))?;
    socket
        .join_multicast_v6(&MDNS_GROUP, index)
        .map_err(|e| format!("joining ff02::fb: {e}"))?;
    socket.set_multicast_loop_v6(false).unwrap();
    // mDNS packets carry hop limit 255 (RFC 6762 §11); responders drop others.
    rustix::net::sockopt::set_ipv6_multicast_hops(&socket, 255).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let query = dns_query(host);
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        socket
            .send_to(&query, SocketAddrV6::new(MDNS_GROUP, 5353, 0, index))
            .map_err(|e| format!("sending the query: {e}"))?;
        let round = Instant::now() + Duration::from_secs(1);
        let mut buffer = [0u8; 9000];
        while Instant::now() < round {
            let Ok((len, from)) = socket.recv_from(&mut buffer) else {
                continue;
            };
            if buffer[2] & 0x80 == 0 {
                continue; // a query (ours, or the guest's), not an answer
            }
            match aaaa_records(&buffer[..len], host) {
                Ok(found) if !found.is_empty() => return Ok(found),
                Ok(_) => seen.push(format!("{from}: no AAAA for {host}")),
                Err(e) => seen.push(format!("{from}: {e}")),
            }
        }
    }
    Err(format!("no mDNS answer for {host}; packets seen: {seen:?}"))
}

/// A one-question mDNS query for `host`'s AAAA records.
fn dns_query(host: &str) -> Vec<u8> {
    let mut packet = vec![0u8; 12];
    packet[5] = 1; // one question
    for label in host.trim_end_matches('.').split('.') {
        packet.push(label.len() as u8);
        packet.extend_from_slice(label.as_bytes());
    }
    packet.extend_from_slice(&[0, 0, 28, 0, 1]); // root, AAAA, IN
    packet
}

/// A (possibly compressed) name at `pos`; returns it and the position after it.
fn read_name(packet: &[u8], mut pos: usize) -> Result<(String, usize), String> {
    let mut labels = Vec::new();
    let mut end = None;
    for _ in 0..64 {
        let len = *packet.get(pos).ok_or("name runs past the packet")? as usize;
        if len & 0xc0 == 0xc0 {
            let low = *packet.get(pos + 1).ok_or("truncated pointer")? as usize;
            end.get_or_insert(pos + 2);
            pos = ((len & 0x3f) << 8) | low;
        } else if len == 0 {
            return Ok((labels.join("."), end.unwrap_or(pos + 1)));
        } else {
            let label = packet
                .get(pos + 1..pos + 1 + len)
                .ok_or("label runs past the packet")?;
            labels.push(String::from_utf8_lossy(label).into_owned());
            pos += 1 + len;
        }
    }
    Err("name loops".into())
}

/// The AAAA records for `host` in a DNS message's answers and additionals.
fn aaaa_records(packet: &[u8], host: &str) -> Result<Vec<Ipv6Addr>, String> {
    if packet.len() < 12 || packet[2] & 0x80 == 0 {
        return Ok(Vec::new()); // a query (ours, or someone's), not an answer
    }
    let count = |i: usize| u16::from_be_bytes([packet[i], packet[i + 1]]) as usize;
    let mut pos = 12;
    for _ in 0..count(4) {
        pos = read_name(packet, pos)?.1 + 4;
    }
    let mut found = Vec::new();
    for _ in 0..count(6) + count(8) + count(10) {
        let (name, after) = read_name(packet, pos)?;
        let header = packet.get(after..after + 10).ok_or("truncated record")?;
        let kind = u16::from_be_bytes([header[0], header[1]]);
        let len = u16::from_be_bytes([header[8], header[9]]) as usize;
        let data = packet
            .get(after + 10..after + 10 + len)
            .ok_or("truncated data")?;
        if kind == 28 && len == 16 && name.eq_ignore_ascii_case(host.trim_end_matches('.')) {
            found.push(Ipv6Addr::from(<[u8; 16]>::try_from(data).unwrap()));
        }
        pos = after + 10 + len;
    }
    Ok(found)
}

#[test]
fn reads_aaaa_records_from_a_compressed_answer() {
    let mut answer = dns_query("turntable.local");
    answer[2] = 0x84; // response, authoritative
    answer[7] = 1; // one answer
    answer.extend_from_slice(&[0xc0, 12, 0, 28, 0x80, 1, 0, 0, 0, 120, 0, 16]);
    let address: Ipv6Addr = "fd42:7669:6e79:1:5054:ff:fe12:3456".parse().unwrap();
    answer.extend_from_slice(&address.octets());
    assert_eq!(
        aaaa_records(&answer, "turntable.local").unwrap(),
        vec![address]
    );
    assert!(aaaa_records(&answer, "other.local").unwrap().is_empty());
}

/// The SLAAC address (EUI-64) a card with `mac` takes in [`PREFIX`]: the
/// address the device must keep across reboots.
pub fn eui64_address(mac: &str) -> String {
    let bytes: Vec<u8> = mac
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    let id = [
        bytes[0] ^ 0x02,
        bytes[1],
        bytes[2],
        0xff,
        0xfe,
        bytes[3],
        bytes[4],
        bytes[5],
    ];
    let groups: Vec<String> = id
        .chunks(2)
        .map(|pair| format!("{:x}", u16::from_be_bytes([pair[0], pair[1]])))
        .collect();
    format!("{PREFIX}:{}", groups.join(":"))
}

#[test]
fn eui64_of_qemus_default_mac() {
    assert_eq!(
        eui64_address("52:54:00:12:34:56"),
        "fd42:7669:6e79:1:5054:ff:fe12:3456"
    );
}

/// [`ready`], and Debian's nginx installed: what a test that serves
/// releases needs (skip or fail as `ready` does).
pub fn ready_to_serve(name: &str, backend: Option<Backend>) -> Option<Backend> {
    let backend = ready(name, backend)?;
    test_support::found(
        name,
        Some(std::path::Path::new("/usr/sbin/nginx")).filter(|p| p.exists()),
        || "nginx is not installed (apt-get install nginx)".into(),
    )?;
    Some(backend)
}

/// The port [`Nginx`] listens on.
pub const PORT: u16 = 8080;

/// Debian's nginx serving `root` on port 8080 of the test network's host
/// side, in the foreground, stopped when dropped. Its access log says what
/// a client downloaded ([`Nginx::bytes_sent`]).
pub struct Nginx {
    child: Child,
    dir: PathBuf,
}

impl Nginx {
    pub fn start(net: &TestNet, root: &std::path::Path) -> Nginx {
        let dir = net.dir().join("nginx");
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("nginx.conf");
        let d = dir.display();
        std::fs::write(
            &conf,
            format!(
                "worker_processes 1;\nerror_log {d}/error.log;\npid {d}/nginx.pid;\nevents {{}}\n\
                 http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n\
                 default_type application/octet-stream;\n\
                 server {{ listen [::]:{PORT} ipv6only=on; root {}; }}\n}}\n",
                root.display()
            ),
        )
        .unwrap();
        let child = net
            .command("nginx")
            .args(["-e", &format!("{d}/error.log"), "-c"])
            .arg(&conf)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .spawn()
            .expect("starting nginx (package nginx)");
        let url = format!("http://[{ROUTER}]:{PORT}/");
        eventually("nginx answering", Duration::from_secs(30), || {
            let (ok, out) = net.run("curl", &["-sS", "-g", "-o", "/dev/null", "-I", &url]);
            if ok { Ok(()) } else { Err(out) }
        });
        Nginx { child, dir }
    }

    /// The access log so far (nginx's `combined` format, a line per request).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    /// The body bytes nginx sent for requests of `path` in `log` (a part of
    /// [`Nginx::access_log`]), and how many requests those were.
    pub fn bytes_sent(log: &str, path: &str) -> (u64, usize) {
        let mut bytes = 0;
        let mut requests = 0;
        for line in log.lines() {
            // ... "GET /path HTTP/1.1" 206 12345 "referer" "agent"
            let mut quoted = line.split('"');
            let (Some(_), Some(request), Some(after)) =
                (quoted.next(), quoted.next(), quoted.next())
            else {
                continue;
            };
            if request.split(' ').nth(1) != Some(path) {
                continue;
            }
            let sent = after
                .split_whitespace()
                .nth(1)
                .and_then(|n| n.parse::<u64>().ok());
            bytes += sent.unwrap_or(0);
            requests += 1;
        }
        (bytes, requests)
    }

    /// nginx's error log.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    /// SIGTERM, so the master stops its workers (SIGKILL would leave them
    /// running, orphaned); SIGKILL only if it has not exited in 10 s.
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
