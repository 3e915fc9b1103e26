//! Shared helpers for the integration tests: finding the lesson programs, running them with a
//! deadline, free ports on loopback, and the real peers (nc, socat, python3); `tcp`: what the
//! kernel says about a TCP socket (TCP_INFO, ss).
#![allow(dead_code)]
pub mod herd;
pub mod tcp;

use std::io::Read;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// target/debug (or release): the parent of the `deps` folder this test binary runs from.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>")
        .to_path_buf()
}

/// The built program for lesson `number` (`cargo test` builds every example).
pub fn lesson_program(number: u8) -> PathBuf {
    let path = target_dir().join("examples").join(format!("lesson-{number:02}"));
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --examples` (make test does)",
        path.display()
    );
    path
}

/// The project's root folder.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `command` to the end, or kills it (by its own PID) after `limit`.
pub fn run_with_deadline(mut command: Command, limit: Duration) -> Output {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command.spawn().expect("starting the program");
    wait_with_deadline(child, limit)
}

/// Waits for `child` to end, killing it after `limit`; panics if it had to be killed.
pub fn wait_with_deadline(mut child: Child, limit: Duration) -> Output {
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out_reader = std::thread::spawn(move || read_all(stdout.as_mut()));
    let err_reader = std::thread::spawn(move || read_all(stderr.as_mut()));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the program") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let out = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
            panic!("still running after {limit:?}; killed it. Its output so far:\n{out}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

fn read_all(stream: Option<&mut impl Read>) -> Vec<u8> {
    let mut bytes = Vec::new();
    if let Some(stream) = stream {
        let _ = stream.read_to_end(&mut bytes);
    }
    bytes
}

/// `lesson-NN server --port PORT` with the plain trace on its stdout, running once a line of
/// the trace contains `ready` (its "listening on" or "waiting for datagrams"). The rest of the
/// trace is read and thrown away, so the server never blocks on a full pipe. Kill it by its
/// PID when done.
pub fn start_lesson_server(lesson: u8, port: u16, ready: &str) -> Child {
    use std::io::BufRead;
    let mut child = Command::new(lesson_program(lesson))
        .args(["server", "--port", &port.to_string()])
        .env("SOCKLAB_TRACE", "plain")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting lesson {lesson}'s server: {e}"));
    let stdout = child.stdout.take().expect("its stdout");
    let mut lines = std::io::BufReader::new(stdout).lines();
    let found = lines
        .by_ref()
        .take(40)
        .map_while(Result::ok)
        .any(|line| line.contains(ready));
    if !found {
        let _ = child.kill();
        let _ = child.wait();
        panic!("lesson {lesson}'s server never printed {ready:?}");
    }
    std::thread::spawn(move || lines.for_each(drop));
    child
}

/// A port that nothing on the machine holds (no listener, connection or TIME_WAIT), for a
/// server that must be told its port. It is chosen below the kernel's ephemeral range
/// (`net.ipv4.ip_local_port_range`, 32768-60999 here), where no connect() picks its local
/// port: a port the kernel chose for port 0 could be taken, between this check and the
/// server's bind, by any of the thousands of connections other tests open meanwhile. Each call
/// tries the next port of a stretch that starts where this process's id says, so two tests of
/// one run never get the same port.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOWEST: u32 = 10_000;
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let span = ephemeral.saturating_sub(LOWEST).max(1);
    let start = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span.min(1000) {
        let port = (LOWEST + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span) as u16;
        if nothing_holds(port) {
            return port;
        }
    }
    panic!("no free port between {LOWEST} and {ephemeral}");
}

/// Whether a bind to the port on every address succeeds without SO_REUSEADDR: then no socket
/// holds it, not even a connection in TIME_WAIT.
fn nothing_holds(port: u16) -> bool {
    use socket2::{Domain, Socket, Type};
    let Ok(probe) = Socket::new(Domain::IPV4, Type::STREAM, None) else {
        return false;
    };
    probe
        .bind(&std::net::SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())
        .is_ok()
}

/// Makes `stream`'s close send a reset (SO_LINGER with a zero timeout) instead of a FIN, for
/// tests that open thousands of connections. A FIN close leaves one TIME_WAIT entry per
/// connection for a minute, and past `net.ipv4.tcp_max_tw_buckets` (131,072 here) the kernel
/// keeps none: a lesson that shows TIME_WAIT would then not see it.
pub fn reset_on_close(stream: &std::net::TcpStream) {
    socket2::SockRef::from(stream)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER");
}

/// Whether a command exists on this machine; `make deps` installs strace, socat, nc and ss.
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Panics with the install hint when a real peer is missing: these tests must not pass silently.
pub fn require(program: &str) {
    assert!(
        have(program),
        "{program} is not installed: run `make deps` (it installs strace, socat, netcat-openbsd, iproute2)"
    );
}
