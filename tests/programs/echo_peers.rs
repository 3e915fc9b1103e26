//! Lesson 01's server mode serves real peers as a learner would use them (nc, socat, Python's
//! socket), and a bad argument gets a one-line error instead of a panic.

use crate::util;
use std::net::{Ipv4Addr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const PEER_LIMIT: Duration = Duration::from_secs(10);

fn stop(mut server: Child) {
    let _ = server.kill();
    let _ = server.wait();
}

fn peer_output(mut command: Command) -> String {
    let output = util::run_with_deadline(
        {
            command.stdin(Stdio::piped());
            command
        },
        PEER_LIMIT,
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `sh -c` so the peer's stdin is a here-string: the peer sends it, then sees the echo.
fn shell(script: &str) -> Command {
    let mut command = Command::new("sh");
    command.args(["-c", script]);
    command
}

#[test]
fn nc_gets_its_line_back() {
    util::require("nc");
    let port = util::free_port();
    let server = util::start_lesson_server(1, port, "listening on");
    // -q 1: after stdin ends, wait a second for the echo, then quit (OpenBSD nc).
    let echoed = peer_output(shell(&format!("printf 'hello from nc\\n' | nc -q 1 127.0.0.1 {port}")));
    stop(server);
    assert_eq!(echoed, "hello from nc\n");
}

#[test]
fn socat_and_python_get_their_lines_back_from_one_server() {
    util::require("socat");
    util::require("python3");
    let port = util::free_port();
    let server = util::start_lesson_server(1, port, "listening on");
    let from_socat = peer_output(shell(&format!(
        "printf 'via socat\\n' | socat -t 1 - TCP:127.0.0.1:{port}"
    )));
    let python = format!(
        "import socket\ns = socket.create_connection(('127.0.0.1', {port}))\ns.sendall(b'via python\\n')\n\
         print(s.recv(100).decode(), end='')\ns.close()"
    );
    let mut command = Command::new("python3");
    command.args(["-c", &python]);
    let from_python = peer_output(command);
    stop(server);
    assert_eq!(from_socat, "via socat\n");
    assert_eq!(from_python, "via python\n");
}

#[test]
fn a_port_that_is_not_a_number_is_a_one_line_error() {
    let mut command = Command::new(util::lesson_program(1));
    command.args(["server", "--port", "70o0"]);
    let output = util::run_with_deadline(command, PEER_LIMIT);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(stderr.lines().count(), 1, "one line, got: {stderr}");
    assert!(stderr.contains("\"70o0\" is not a port number"), "{stderr}");
}

#[test]
fn a_port_that_is_taken_is_a_one_line_error() {
    let holder = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding a port to hold");
    let port = holder.local_addr().expect("its address").port();
    let mut command = Command::new(util::lesson_program(1));
    command
        .args(["server", "--port", &port.to_string()])
        .env("SOCKLAB_TRACE", "off");
    let output = util::run_with_deadline(command, PEER_LIMIT);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stderr.lines().count(), 1, "one line, got: {stderr}");
    assert!(
        stderr.contains(&format!("bind 127.0.0.1:{port}: EADDRINUSE")),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"));
}
