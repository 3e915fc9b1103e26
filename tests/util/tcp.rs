//! What the kernel says about a TCP socket: its `struct tcp_info`, the rows `ss` prints, the
//! sysctls and counters a test must read to say which case it ran.

use std::os::fd::{AsFd, AsRawFd};
use std::process::Command;
use std::time::{Duration, Instant};

/// `tcpi_state` values (include/net/tcp_states.h).
pub const ESTABLISHED: u8 = 1;
pub const SYN_SENT: u8 = 2;
pub const FIN_WAIT1: u8 = 4;
pub const FIN_WAIT2: u8 = 5;
pub const CLOSE: u8 = 7;
pub const CLOSE_WAIT: u8 = 8;
pub const LISTEN: u8 = 10;

/// `getsockopt(fd, SOL_TCP, TCP_INFO)`. On a listener `tcpi_unacked` is the accept queue's
/// length and `tcpi_sacked` its limit (the kernel's tcp_get_info), what ss calls Recv-Q and Send-Q.
pub fn info(fd: &impl AsFd) -> libc::tcp_info {
    // SAFETY: tcp_info is plain integers; all zeroes is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: info and len are valid for writes of `len` bytes and one socklen_t; the kernel
    // writes at most `len` bytes.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_fd().as_raw_fd(),
            libc::SOL_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        )
    };
    assert_eq!(ret, 0, "getsockopt TCP_INFO: {}", std::io::Error::last_os_error());
    info
}

/// The socket's TCP state, as `tcpi_state`.
pub fn state(fd: &impl AsFd) -> u8 {
    info(fd).tcpi_state
}

/// One line of `ss -tan`: the state as ss names it, the two queues, and the two ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub state: String,
    pub recv_q: u64,
    pub send_q: u64,
    pub local_port: u16,
    pub peer_port: u16,
}

/// Every IPv4 TCP socket on 127.0.0.1 with `port` at either end, as `ss -tan` shows it.
pub fn ss(port: u16) -> Vec<Row> {
    super::require("ss");
    let filter = format!("( sport = :{port} or dport = :{port} )");
    // ss reads the kernel's table in a netlink dump, which fails when the table changes under
    // it (other tests open and close sockets all the time): ask again, a bounded number of times.
    let mut last = None;
    for _ in 0..SS_ATTEMPTS {
        let output = Command::new("ss")
            .args(["-4", "-t", "-a", "-n", "-H", &filter])
            .output()
            .expect("running ss");
        if output.status.success() {
            return String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter_map(parse_row)
                .collect();
        }
        last = Some(output);
    }
    panic!("ss failed {SS_ATTEMPTS} times: {last:?}");
}

/// How many times [`ss`] asks before it gives up.
const SS_ATTEMPTS: usize = 5;

fn parse_row(line: &str) -> Option<Row> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let port = |address: &str| -> Option<u16> { address.rsplit_once(':')?.1.parse().ok() };
    Some(Row {
        state: fields.first()?.to_string(),
        recv_q: fields.get(1)?.parse().ok()?,
        send_q: fields.get(2)?.parse().ok()?,
        local_port: port(fields.get(3)?)?,
        // A listener's peer is `0.0.0.0:*`.
        peer_port: port(fields.get(4)?).unwrap_or(0),
    })
}

/// The row ss shows for the socket from `local` to `peer`, if the kernel has one.
pub fn row(local: u16, peer: u16) -> Option<Row> {
    ss(local)
        .into_iter()
        .find(|r| r.local_port == local && r.peer_port == peer)
}

/// The listener's row (`LISTEN`, peer `*`).
pub fn listen_row(port: u16) -> Row {
    ss(port)
        .into_iter()
        .find(|r| r.state == "LISTEN" && r.local_port == port)
        .unwrap_or_else(|| panic!("ss shows no listener on port {port}"))
}

/// Waits (at most `limit`, looking every millisecond) until `done` holds; says whether it did.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    loop {
        if done() {
            return true;
        }
        if started.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A sysctl, read from /proc/sys: `sysctl("net/core/somaxconn")`.
pub fn sysctl(name: &str) -> String {
    let path = format!("/proc/sys/{name}");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {path}: {e}"))
        .trim()
        .to_string()
}

/// `TcpExt: ListenOverflows` from /proc/net/netstat: how many times, in this network namespace,
/// a listener dropped a handshake because its accept queue was full (`nstat -az` shows it too).
pub fn listen_overflows() -> u64 {
    let table = std::fs::read_to_string("/proc/net/netstat").expect("reading /proc/net/netstat");
    let mut lines = table.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (
        lines.next().expect("TcpExt names"),
        lines.next().expect("TcpExt values"),
    );
    let column = names
        .split_whitespace()
        .position(|n| n == "ListenOverflows")
        .expect("a ListenOverflows column");
    values
        .split_whitespace()
        .nth(column)
        .and_then(|v| v.parse().ok())
        .expect("a ListenOverflows value")
}
