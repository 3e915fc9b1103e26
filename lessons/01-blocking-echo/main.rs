//! Lesson 01: a blocking echo server, and the client that talks to it.
//!
//! Python's `socket.socket()`, `bind`, `listen`, `accept`, `recv`, `send` and `close` are each
//! one system call. This program makes them through `socklab::sys`, so each one is printed
//! as strace prints it, with a note on what it means here.
//!
//!   make lesson-1                                  the demo: a server and two clients
//!   make lesson-1 ARGS="server --port 7000"        a server for `nc 127.0.0.1 7000`
//!   make lesson-1 ARGS="client --port 7000 hi"     a client for a server you started
//!
//! In the demo the clients are separate processes (this program again, in client mode), as
//! they would be in a second terminal: each has its own descriptor table.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::mpsc;

use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType};
use socklab::lessons::{self, Args, Context, Outcome, Role};
use socklab::{sys, trace};

/// The seed's listing 9 listens on 23000; the demo asks the kernel for any free port instead.
const DEFAULT_PORT: u16 = 23000;
/// How many connections may wait, handshake done, for accept (Python's `listen(5)`).
const BACKLOG: i32 = 5;
/// Python's `recv(100)`: at most this many bytes per call.
const RECV_SIZE: usize = 100;

fn main() {
    lessons::main(DEFAULT_PORT, run);
}

fn run(args: Args) -> Outcome {
    match args.role {
        Role::Demo => demo(),
        Role::Server => {
            trace::set_actor("server");
            let listener = listen_on(args.addr())?;
            trace::say(format!(
                "listening on {}; try: nc {} {}",
                args.addr(),
                args.host,
                args.port
            ));
            loop {
                // One client's trouble (a reset, say) ends that conversation, not the server.
                if let Err(error) = serve_one(&listener) {
                    trace::say(format!("that connection failed: {error}; waiting for the next"));
                }
            }
        }
        Role::Client => {
            if trace::actor() == "main" {
                trace::set_actor("client");
            }
            // Each word on the command line is one line to send: `client "Hello World" bye`.
            let lines: Vec<String> = if args.rest.is_empty() {
                vec!["Hello World\n".into()]
            } else {
                args.rest.iter().map(|word| format!("{word}\n")).collect()
            };
            talk(args.addr(), &lines)
        }
    }
}

/// socket, bind, listen: a passive socket, ready for clients.
fn listen_on(addr: SocketAddr) -> Result<OwnedFd, String> {
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let listener =
        sys::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, SockProtocol::Tcp).context("socket")?;
    sys::bind(&listener, addr).context(format!("bind {addr}"))?;
    trace::explain("from now on the kernel answers SYNs on this port and queues finished handshakes");
    sys::listen(&listener, BACKLOG).context("listen")?;
    Ok(listener)
}

/// accept one client, echo what it sends until it closes, then close our end.
fn serve_one(listener: &OwnedFd) -> Result<(), String> {
    trace::explain("blocks until a client finishes the three-way handshake; then a new descriptor for it");
    let (conn, peer) = sys::accept4(listener, SockFlag::SOCK_CLOEXEC).context("accept4")?;
    trace::say(format!("connected by {peer}"));
    let mut buf = [0u8; RECV_SIZE];
    loop {
        let n = sys::recv(&conn, &mut buf, MsgFlags::empty()).context("recv")?;
        if n == 0 {
            trace::say(format!("{peer} sent its FIN: we close our end too"));
            break;
        }
        sys::send_all(&conn, &buf[..n], MsgFlags::MSG_NOSIGNAL).context("send")?;
    }
    sys::close(conn).context("close")?;
    Ok(())
}

/// A client: connect, then for each message send it and wait for the echo.
fn talk(server: SocketAddr, messages: &[String]) -> Outcome {
    let family = if server.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    trace::explain("another process, its own descriptor table: 3 is the lowest free number here too");
    let sock = sys::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, SockProtocol::Tcp).context("socket")?;
    sys::connect(&sock, server).context(format!("connect {server}"))?;
    let mut buf = [0u8; RECV_SIZE];
    for message in messages {
        sys::send_all(&sock, message.as_bytes(), MsgFlags::MSG_NOSIGNAL).context("send")?;
        let n = sys::recv(&sock, &mut buf, MsgFlags::empty()).context("recv")?;
        trace::say(format!("the server echoed {:?}", String::from_utf8_lossy(&buf[..n])));
    }
    sys::close(sock).context("close")?;
    Ok(())
}

/// The server on a thread of its own; two client processes, one after the other.
fn demo() -> Outcome {
    let (port_tx, port_rx) = mpsc::channel();
    let server = trace::spawn("server", move || -> Result<(), String> {
        let listener = listen_on("127.0.0.1:0".parse().expect("a literal address"))?;
        trace::explain("port 0 asked the kernel to choose; this asks which port it chose");
        let bound = sys::getsockname(&listener).context("getsockname")?;
        let port = bound.as_sockaddr_in().map_or(0, |a| a.port());
        port_tx.send(port).map_err(|e| e.to_string())?;
        for _ in 0..2 {
            serve_one(&listener)?;
        }
        sys::close(listener).context("close")?;
        Ok(())
    });
    let port = port_rx
        .recv()
        .map_err(|_| "the server thread stopped before listening")?;
    lessons::run_process("client#1", "client", port, &["Hello World", "bye"])?;
    lessons::run_process("client#2", "client", port, &["second client"])?;
    server.join().map_err(|_| "the server panicked")??;
    Ok(())
}
