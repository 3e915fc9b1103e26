//! The chat room on edge-triggered epoll: the shared suite (`tests/programs/chat/mod.rs`) against
//! `socklab chat-server --mux epoll-et`, then the claim only edge-triggering makes: a handler
//! that stops before `EAGAIN` is not told again, so the loop must come back by itself.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;

use crate::chat;
use crate::chat::{Server, WAIT};

chat_suite!("epoll-et");

/// One burst of 300 KB, far more than one wake's reads (16 recvs of 4 KB), and then silence:
/// the socket's readable edge came once, early, and no new bytes will bring another. A loop
/// that left the rest waiting for the next edge would never echo it; this one carries the
/// unfinished read over to its next pass, so every byte comes back, in order.
#[test]
fn a_burst_larger_than_one_wake_is_read_to_the_end_without_a_new_edge() {
    const BURST: usize = 300_000;
    let mut command = Command::new(chat::socklab());
    command.args(["echo-server", "--mux", "epoll-et", "--port", "0", "--trace", "off"]);
    let mut server = Server::start_command(command);
    let mut client = TcpStream::connect(("127.0.0.1", server.port)).expect("connecting");
    client.set_read_timeout(Some(WAIT)).expect("SO_RCVTIMEO");
    let burst: Vec<u8> = (0..BURST).map(|i| (i % 251) as u8).collect();
    let mut writer = client.try_clone().expect("cloning the stream");
    let sent = burst.clone();
    // Written from a thread while this one reads: the echo comes back as the burst goes out.
    let writing = std::thread::spawn(move || writer.write_all(&sent));
    let mut echoed = vec![0u8; BURST];
    client
        .read_exact(&mut echoed)
        .unwrap_or_else(|e| panic!("the echo stopped short of {BURST} bytes: {e}"));
    writing.join().expect("the writer").expect("sending the burst");
    assert!(echoed == burst, "the echo differs from the burst");
    server.assert_alive();
}
