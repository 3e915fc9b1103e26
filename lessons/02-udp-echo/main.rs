//! Lesson 02: a UDP echo server, and clients that show what datagrams do.
//!
//! UDP has no listen, no accept and no connection: the server binds a port and answers each
//! datagram with `sendto`, to the address `recvfrom` reported. A datagram arrives whole or not
//! at all; one that is bigger than the receiver's buffer is cut, and the rest is thrown away.
//! `connect` on a UDP socket sends nothing: it only records the peer, so that `send` needs no
//! address and the kernel lets in only that peer's datagrams, and it is what makes an ICMP
//! "port unreachable" come back as ECONNREFUSED.
//!
//!   make lesson-2                                      the demo: a server and four clients
//!   make lesson-2 ARGS="server --port 7000"            a server for `nc -u 127.0.0.1 7000`
//!   make lesson-2 ARGS="client --port 7000 hi there"   one datagram per word, each echoed
//!   make lesson-2 ARGS="client --port 7000 datagrams"  the demo's clients, by hand: also
//!                                                      `connected` and `no-server`
//!
//! In the demo the clients are separate processes (this program again, in client mode): each
//! has its own descriptor table and its own port.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::mpsc;

use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, sockopt};
use nix::sys::time::{TimeVal, TimeValLike};
use socklab::lessons::{self, Args, Context, Outcome, Role};
use socklab::sys::{self, Errno};
use socklab::trace;

/// The seed's tsUserv.py serves UDP port 21567; the demo asks the kernel for a free port instead.
const DEFAULT_PORT: u16 = 21567;
/// Python's `recvfrom(100)` in the seed's listing 11: a datagram longer than this is cut.
const RECV_SIZE: usize = 100;
/// How many datagrams the demo's clients send the server, all told (1 + 4 + 1).
const DEMO_DATAGRAMS: usize = 6;
/// The demo's server gives up after this long without a datagram, so it can never hang.
const SERVER_PATIENCE_MS: i64 = 5000;
/// How long a client waits for an echo: UDP may lose a datagram, so nobody waits forever.
const REPLY_TIMEOUT_MS: i64 = 5000;
/// How long the `no-server` client listens for an answer that will not come.
const SILENCE_MS: i64 = 300;

fn main() {
    lessons::main(DEFAULT_PORT, run);
}

fn run(args: Args) -> Outcome {
    match args.role {
        Role::Demo => demo(),
        Role::Server => {
            trace::set_actor("server");
            let sock = bind_udp(args.addr())?;
            trace::say(format!(
                "waiting for datagrams on {}; try: nc -u {} {}",
                args.addr(),
                args.host,
                args.port
            ));
            let mut first = true;
            loop {
                // A datagram that cannot be echoed is that datagram's problem, not the server's.
                if let Err(error) = echo_one(&sock, first) {
                    trace::say(format!("that datagram failed: {error}; waiting for the next"));
                }
                first = false;
            }
        }
        Role::Client => {
            if trace::actor() == "main" {
                trace::set_actor("client");
            }
            let server = args.addr();
            match args.rest.first().map(String::as_str) {
                Some("datagrams") => datagrams(server),
                Some("connected") => connected(server),
                Some("no-server") => no_server(server),
                _ => {
                    let words: Vec<String> = if args.rest.is_empty() {
                        vec!["Hello World".into()]
                    } else {
                        args.rest.clone()
                    };
                    echo_words(server, &words)
                }
            }
        }
    }
}

/// A UDP socket: `SOCK_DGRAM`, and `IPPROTO_UDP` (which 0 would also have chosen).
fn udp_socket(addr: SocketAddr) -> Result<OwnedFd, String> {
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    sys::socket(family, SockType::Datagram, SockFlag::SOCK_CLOEXEC, SockProtocol::Udp).context("socket")
}

/// socket and bind: all a UDP server needs before its first datagram.
fn bind_udp(addr: SocketAddr) -> Result<OwnedFd, String> {
    trace::explain("a UDP endpoint: SOCK_DGRAM; no listen and no accept will follow");
    let sock = udp_socket(addr)?;
    trace::explain("from now on datagrams to this port queue up on this socket");
    sys::bind(&sock, addr).context(format!("bind {addr}"))?;
    Ok(sock)
}

/// `SO_RCVTIMEO`: a blocking receive gives up with EAGAIN after `ms`. (Python's `settimeout`
/// gets that effect without this option: a non-blocking socket and a `poll` before each call.)
fn receive_timeout(sock: &OwnedFd, ms: i64, why: Option<&str>) -> Result<(), String> {
    if let Some(why) = why {
        trace::explain(why);
    }
    sys::setsockopt(sock, sockopt::ReceiveTimeout, &TimeVal::milliseconds(ms)).context("setsockopt SO_RCVTIMEO")
}

/// recvfrom one datagram, sendto it back where it came from. The first is explained; the
/// lines of the others speak for themselves.
fn echo_one(sock: &OwnedFd, first: bool) -> Result<(), String> {
    let mut buf = [0u8; RECV_SIZE];
    if first {
        trace::explain("blocks until a datagram arrives, from anyone; returns it whole, with the sender's address");
    }
    let (n, from) = sys::recvfrom(sock, &mut buf).context("recvfrom")?;
    let from = from.ok_or("recvfrom gave no sender address")?;
    if first {
        trace::explain("the reply names its destination: the address recvfrom reported");
    }
    sys::sendto(sock, &buf[..n], from, MsgFlags::empty()).context(format!("sendto {from}"))?;
    if first {
        // Seed 004's tsUserv.py prints this for every datagram; after the first, the trace's
        // own recvfrom and sendto lines say as much.
        trace::say(format!("...received from and returned to: {from}"));
    }
    Ok(())
}

/// The seed's client: one datagram per word, each followed by a wait for its echo.
fn echo_words(server: SocketAddr, words: &[String]) -> Outcome {
    trace::explain("a UDP socket: no connect needed before sending");
    let sock = udp_socket(server)?;
    receive_timeout(
        &sock,
        REPLY_TIMEOUT_MS,
        Some("a datagram can be lost: never wait for a reply forever"),
    )?;
    let mut buf = [0u8; RECV_SIZE];
    for (i, word) in words.iter().enumerate() {
        let message = format!("{word}\n");
        trace::explain(if i == 0 {
            "no handshake: the datagram leaves at once; the kernel picks our port now (an implicit bind)"
        } else {
            "the next word, one more datagram"
        });
        sys::sendto(&sock, message.as_bytes(), server, MsgFlags::empty()).context(format!("sendto {server}"))?;
        trace::explain(if i == 0 {
            "recv() is recvfrom with no address: the next datagram, from whoever sent it"
        } else {
            "its echo"
        });
        let n = sys::recv(&sock, &mut buf, MsgFlags::empty()).context("recv, waiting for the echo")?;
        trace::say(format!("the server echoed {:?}", String::from_utf8_lossy(&buf[..n])));
    }
    close_udp(sock)
}

/// Two datagrams keep their boundary; a datagram longer than the server's buffer loses its tail.
fn datagrams(server: SocketAddr) -> Outcome {
    let sock = udp_socket(server)?;
    receive_timeout(&sock, REPLY_TIMEOUT_MS, None)?;
    let mut buf = [0u8; RECV_SIZE];

    trace::explain("two sends of different sizes, before reading anything");
    sys::sendto(&sock, b"short\n", server, MsgFlags::empty()).context("sendto")?;
    trace::explain("the second datagram");
    sys::sendto(&sock, b"a longer second datagram\n", server, MsgFlags::empty()).context("sendto")?;
    trace::explain("one recv, one datagram: only the first echo, though the second may be waiting too");
    let first = sys::recv(&sock, &mut buf, MsgFlags::empty()).context("recv, waiting for the echo")?;
    trace::explain("then the second, whole: the boundary between the two sends was kept");
    let second = sys::recv(&sock, &mut buf, MsgFlags::empty()).context("recv, waiting for the echo")?;
    trace::say(format!(
        "two datagrams came back as {first} and {second} bytes; a TCP stream could have merged them"
    ));

    let long = format!("{:.<149}\n", "150 bytes: more than the server's recvfrom(100) takes ");
    trace::explain("150 bytes in one datagram (UDP allows up to 65507)");
    sys::sendto(&sock, long.as_bytes(), server, MsgFlags::empty()).context("sendto")?;
    trace::explain("only 100 came back: the server's recvfrom(100) cut the datagram");
    let cut = sys::recv(&sock, &mut buf, MsgFlags::empty()).context("recv, waiting for the echo")?;
    trace::explain("one more datagram");
    sys::sendto(&sock, b"after\n", server, MsgFlags::empty()).context("sendto")?;
    trace::explain("the next datagram, not the missing 50 bytes: the kernel threw them away");
    let after = sys::recv(&sock, &mut buf, MsgFlags::empty()).context("recv, waiting for the echo")?;
    trace::say(format!(
        "sent {}, got {cut} back, then {after} bytes of the next datagram: the rest of the long one is gone",
        long.len()
    ));
    close_udp(sock)
}

/// connect() on UDP: send without an address, and only the peer's datagrams get in.
fn connected(server: SocketAddr) -> Outcome {
    let sock = udp_socket(server)?;
    receive_timeout(&sock, REPLY_TIMEOUT_MS, None)?;
    trace::explain("no packet leaves: the kernel records the peer, and picks our local port (an implicit bind)");
    sys::connect(&sock, server).context(format!("connect {server}"))?;
    trace::explain("our address, for the stranger to aim at");
    let ours = sys::getsockname(&sock).context("getsockname")?;

    trace::explain("a second socket in this process, playing a stranger");
    let stranger = udp_socket(server)?;
    trace::explain("a datagram to our connected socket from an address that is not its peer");
    sys::sendto(&stranger, b"from a stranger\n", ours, MsgFlags::empty()).context("sendto")?;

    trace::explain("send() on a connected UDP socket: sendto with no address, the kernel fills in the peer");
    sys::send(&sock, b"ping\n", MsgFlags::empty()).context("send")?;
    let mut buf = [0u8; RECV_SIZE];
    trace::explain("the server's echo; the stranger's datagram, sent first, was dropped: only the peer gets in");
    let n = sys::recv(&sock, &mut buf, MsgFlags::empty()).context("recv, waiting for the echo")?;
    trace::say(format!(
        "got {:?} from the server; nothing from the stranger",
        String::from_utf8_lossy(&buf[..n])
    ));
    trace::explain("the stranger's socket");
    sys::close(stranger).context("close")?;
    close_udp(sock)
}

/// Nobody is bound to the port: unconnected, the datagram is lost silently; connected, the
/// ICMP "port unreachable" that comes back turns into ECONNREFUSED on the next call.
fn no_server(server: SocketAddr) -> Outcome {
    let sock = udp_socket(server)?;
    receive_timeout(
        &sock,
        SILENCE_MS,
        Some("we will wait a little for a reply that will not come"),
    )?;
    trace::explain("nobody is bound to that port, and yet sendto succeeds: UDP sends without asking");
    sys::sendto(&sock, b"anyone there?\n", server, MsgFlags::empty()).context("sendto")?;
    let mut buf = [0u8; RECV_SIZE];
    trace::explain("the timeout ran out: no reply and no error; an unconnected socket ignores ICMP errors");
    match sys::recv(&sock, &mut buf, MsgFlags::empty()) {
        Err(Errno::EAGAIN) => trace::say("the datagram was lost, and nothing told us"),
        other => return Err(format!("expected silence, got {other:?}").into()),
    }

    trace::explain("still no packet: connect on UDP succeeds whether or not anyone is there");
    sys::connect(&sock, server).context(format!("connect {server}"))?;
    trace::explain("succeeds too: the kernel cannot know yet");
    sys::send(&sock, b"hello?\n", MsgFlags::empty()).context("send")?;
    trace::explain("the ICMP 'port unreachable' came back; a connected socket reports it on its next call");
    match sys::recv(&sock, &mut buf, MsgFlags::empty()) {
        Err(Errno::ECONNREFUSED) => trace::say("refused: now we know nobody is there"),
        other => return Err(format!("expected ECONNREFUSED, got {other:?}").into()),
    }
    close_udp(sock)
}

fn close_udp(sock: OwnedFd) -> Outcome {
    sys::close(sock).context("close")?;
    Ok(())
}

/// The server on a thread of its own; three client processes while it runs, one after it ended.
fn demo() -> Outcome {
    let (port_tx, port_rx) = mpsc::channel();
    let server = trace::spawn("server", move || -> Result<(), String> {
        let sock = bind_udp("127.0.0.1:0".parse().expect("a literal address"))?;
        trace::explain("port 0 asked the kernel to choose; this asks which port it chose");
        let bound = sys::getsockname(&sock).context("getsockname")?;
        let port = bound.as_sockaddr_in().map_or(0, |a| a.port());
        port_tx.send(port).map_err(|e| e.to_string())?;
        receive_timeout(
            &sock,
            SERVER_PATIENCE_MS,
            Some("the demo's server stops waiting after 5 s of silence: UDP has no end of file to wait for"),
        )?;
        for count in 0..DEMO_DATAGRAMS {
            echo_one(&sock, count == 0)?;
        }
        trace::explain("the port is free again: a datagram sent to it now finds nobody");
        sys::close(sock).context("close")?;
        Ok(())
    });
    let port = port_rx.recv().map_err(|_| "the server thread stopped before binding")?;
    lessons::run_process("client#1", "client", port, &["Hello World"])?;
    lessons::run_process("client#2", "client", port, &["datagrams"])?;
    lessons::run_process("client#3", "client", port, &["connected"])?;
    server.join().map_err(|_| "the server panicked")??;
    lessons::run_process("client#4", "client", port, &["no-server"])?;
    Ok(())
}
