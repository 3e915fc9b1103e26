//! `socklab load`, the load generator `make bench` measures with: against socklab's own servers
//! every check passes and the figures are there; against a Python echo server that changes or
//! loses a byte, the run fails loudly and says where.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::util;
use socklab::load::json::Json;

const LIMIT: Duration = Duration::from_secs(30);

/// Starts `socklab SERVER --mux poll --port 0 --trace off` and reads its port from the line
/// it prints on stderr.
fn socklab_server(command: &str) -> (Child, u16) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_socklab"))
        .args([command, "--mux", "poll", "--port", "0", "--trace", "off"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the server");
    let stderr = BufReader::new(child.stderr.take().expect("its stderr"));
    let line = stderr.lines().next().and_then(Result::ok).unwrap_or_default();
    let port = line
        .split("listens on 127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    (child, port)
}

/// An echo server in Python that, in every chunk longer than 16 bytes, flips the bits of byte
/// 8 (`flip`), drops it (`lose`), or does neither (`echo`). It stops itself after 30 s.
fn python_server(mode: &str) -> (Child, u16) {
    util::require("python3");
    let script = r#"
import signal, socket, sys, threading
signal.alarm(30)
mode = sys.argv[1]
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", 0))
server.listen(128)
print(server.getsockname()[1], flush=True)
def serve(conn):
    with conn:
        while data := conn.recv(65536):
            if len(data) > 16 and mode == "flip":
                data = data[:8] + bytes([data[8] ^ 0xff]) + data[9:]
            if len(data) > 16 and mode == "lose":
                data = data[:8] + data[9:]
            conn.sendall(data)
while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"#;
    let mut child = Command::new("python3")
        .args(["-c", script, mode])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting python3");
    let mut stdout = BufReader::new(child.stdout.take().expect("its stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("its port");
    (child, line.trim().parse().expect("a port number"))
}

fn load(port: u16, server: &Child, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_socklab"));
    command.arg("load").args(args).args([
        "--port",
        &port.to_string(),
        "--server-pid",
        &server.id().to_string(),
        "--json",
    ]);
    util::run_with_deadline(command, LIMIT)
}

fn stop(mut server: Child) {
    let _ = server.kill();
    let _ = server.wait();
}

/// The run's JSON report, and its stderr for messages.
fn parse_report(output: &Output) -> (Json, String) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let report = Json::parse(stdout.trim()).unwrap_or_else(|e| panic!("{e} in {stdout:?}; stderr: {stderr}"));
    (report, stderr)
}

fn passed(output: &Output) -> Json {
    let (report, stderr) = parse_report(output);
    assert!(output.status.success(), "exit {}: {stderr}", output.status);
    assert_eq!(report.get("ok"), Some(&Json::Bool(true)), "{report}");
    report
}

#[test]
fn ping_pong_with_idle_connections_passes_every_check_and_reports_its_figures() {
    let (server, port) = socklab_server("echo-server");
    let many = load(
        port,
        &server,
        &["pingpong", "--conns", "20", "--idle", "30", "--secs", "0.3"],
    );
    let one = load(
        port,
        &server,
        &["pingpong", "--conns", "1", "--secs", "0.3", "--size", "100"],
    );
    stop(server);
    for (output, conns) in [(many, 20.0), (one, 1.0)] {
        let report = passed(&output);
        assert_eq!(report.number("conns"), Some(conns));
        assert!(report.number("msgs_per_s").is_some_and(|n| n > 0.0), "{report}");
        let (p50, p99) = (report.number("p50_us").unwrap(), report.number("p99_us").unwrap());
        assert!(0.0 < p50 && p50 <= p99, "{report}");
        assert!(report.number("server_cpu").is_some(), "{report}");
    }
}

#[test]
fn a_reply_with_a_changed_byte_fails_loudly_and_says_which() {
    let (server, port) = python_server("flip");
    let output = load(port, &server, &["pingpong", "--conns", "2", "--secs", "0.3"]);
    stop(server);
    let (report, stderr) = parse_report(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(report.get("ok"), Some(&Json::Bool(false)));
    assert!(stderr.contains(": message 1: byte 8 came back as 0x"), "{stderr}");
}

#[test]
fn bulk_gets_every_byte_back_and_catches_one_lost() {
    let (good, port) = python_server("echo");
    let output = load(port, &good, &["bulk", "--secs", "0.3"]);
    stop(good);
    let report = passed(&output);
    assert!(report.number("bytes").is_some_and(|n| n > 65536.0), "{report}");

    let (lossy, port) = python_server("lose");
    let output = load(port, &lossy, &["bulk", "--secs", "0.3"]);
    stop(lossy);
    let (_, stderr) = parse_report(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("FAILED: byte 8 came back wrong"), "{stderr}");
}

#[test]
fn chat_fan_out_delivers_every_line_to_every_other_client() {
    let (server, port) = socklab_server("chat-server");
    let output = load(port, &server, &["chat", "--clients", "20", "--lines", "10"]);
    stop(server);
    let report = passed(&output);
    assert_eq!(report.number("delivered"), Some(20.0 * 19.0 * 10.0), "{report}");
    assert_eq!(report.number("lost"), Some(0.0));
    assert_eq!(report.number("out_of_order"), Some(0.0));
}
