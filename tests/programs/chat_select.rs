//! The chat room on select(2): the shared suite (`tests/programs/chat/mod.rs`) against
//! `socklab chat-server --mux select`, then what only select has, the FD_SETSIZE limit, and
//! the command line's one-line errors.

use std::io::Read;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::Command;

use crate::chat;
use crate::chat::{Peer, Server, WAIT};
use crate::util;

chat_suite!("select");

/// Started with descriptors 3 to 1018 already open (copies of stdin, set up by a Python
/// wrapper before it execs the server), the server's listener is 1019, its self-pipe (for
/// SIGINT and SIGTERM) 1020 and 1021, its spare descriptor (kept for EMFILE) 1022, its first
/// client 1023, and the next accept4 returns 1024, which no fd_set can hold. That client is told why and
/// closed; the server neither panics nor stops, and the room never saw the refused client.
#[test]
fn a_descriptor_past_fd_setsize_is_refused_not_a_panic() {
    util::require("python3");
    let wrapper = format!(
        "import os, resource, sys\n\
         soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n\
         if soft < 2048:\n\
         \x20   if hard != resource.RLIM_INFINITY and hard < 2048:\n\
         \x20       sys.exit('RLIMIT_NOFILE hard limit %d is too low for this test' % hard)\n\
         \x20   resource.setrlimit(resource.RLIMIT_NOFILE, (2048, hard))\n\
         for fd in range(3, 1019):\n\
         \x20   os.dup2(0, fd)\n\
         program = {program:?}\n\
         os.execv(program, [program, 'chat-server', '--mux', 'select', '--port', '0', '--trace', 'off'])\n",
        program = chat::socklab().display().to_string()
    );
    let mut command = Command::new("python3");
    command.args(["-c", &wrapper]);
    let mut server = Server::start_command(command);

    let mut first = Peer::tcp(server.port);
    let mut refused = TcpStream::connect(("127.0.0.1", server.port)).expect("connecting the 1024th");
    refused.set_read_timeout(Some(WAIT)).expect("SO_RCVTIMEO");
    let mut told = String::new();
    refused
        .read_to_string(&mut told)
        .expect("reading until the server closes");
    assert_eq!(
        told, "! sorry, the server cannot take you: descriptor 1024 is past select's limit of 1024 (FD_SETSIZE)\n",
        "what the refused client heard before the close"
    );

    first.say("/who");
    first.expect_notice(&format!("in the room: {} (you)", first.name));
    assert!(
        !first.transcript.iter().any(|line| line.contains("joined")),
        "{:?}",
        first.transcript
    );
    server.assert_alive();
}

fn run_socklab(args: &[&str]) -> (Option<i32>, String) {
    let mut command = Command::new(chat::socklab());
    command.args(args);
    let output = util::run_with_deadline(command, WAIT);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "one line, got: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    (output.status.code(), stderr)
}

#[test]
fn a_port_that_is_not_a_number_is_a_one_line_error() {
    let (code, stderr) = run_socklab(&["chat-server", "--port", "70o0"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--port \"70o0\" is not a port number"), "{stderr}");
}

#[test]
fn an_unknown_mux_is_a_one_line_error_that_lists_the_choices() {
    let (code, stderr) = run_socklab(&["chat-server", "--mux", "kqueue"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--mux \"kqueue\""), "{stderr}");
    assert!(stderr.contains("choose from: select"), "{stderr}");
}

#[test]
fn a_grace_that_is_not_a_time_is_a_one_line_error() {
    for grace in ["soon", "0", "-1"] {
        let (code, stderr) = run_socklab(&["chat-server", "--grace", grace]);
        assert_eq!(code, Some(2), "--grace {grace}");
        assert!(stderr.contains(&format!("--grace {grace:?} is not")), "{stderr}");
    }
}

#[test]
fn a_port_that_is_taken_is_a_one_line_error() {
    let holder = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding a port to hold");
    let port = holder.local_addr().expect("its address").port().to_string();
    let (code, stderr) = run_socklab(&["chat-server", "--mux", "select", "--port", &port, "--trace", "off"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains(&format!("bind 127.0.0.1:{port}: EADDRINUSE")),
        "{stderr}"
    );
}

#[test]
fn a_client_with_nobody_to_talk_to_is_a_one_line_error() {
    let port = util::free_port().to_string();
    let (code, stderr) = run_socklab(&["chat-client", "--port", &port]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains(&format!("connect 127.0.0.1:{port}: ECONNREFUSED")),
        "{stderr}"
    );
}
