//! Shared helpers for the integration tests: finding the lesson programs, running them with a
//! deadline, free ports on loopback, and the real peers (nc, socat, python3); `tcp`: what the
//! kernel says about a TCP socket (TCP_INFO, ss).
#![allow(dead_code)]
pub mod herd;
pub mod tcp;

use std::io::Read;
use std::net::{Ipv4Addr, TcpListener};
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

/// A port on 127.0.0.1 that was free a moment ago (the kernel chose it for a socket we closed).
pub fn free_port() -> u16 {
    let probe = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding port 0");
    probe.local_addr().expect("its address").port()
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
