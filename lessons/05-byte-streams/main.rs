//! Lesson 05: TCP is a byte stream, not a sequence of messages.
//!
//! The bytes one side hands to `send` reach the other side's `recv` complete and in order, but
//! not in the same pieces. The demo shows it in four scenes, each with its own client:
//!
//! 1. three sends, one recv: client#1 sends "one", "two" and "three" back to back and leaves;
//!    the server, reading late, gets all of it in one recv, then recv returns 0: end of file;
//! 2. one send, two recvs: client#2 sends three lines in a single send; the server's 16-byte
//!    buffer cuts a line in two and a line reader joins it again; the line "byebye" ends it;
//! 3. half-close: client#3 sends, calls shutdown(SHUT_WR), and still reads the server's reply,
//!    which the server sends after its recv returned 0;
//! 4. a short send: a small send buffer and a reader that does not read yet; a non-blocking
//!    send takes fewer bytes than asked, then fails with EAGAIN; poll waits until the reader
//!    reads, and the last bytes go.
//!
//!   make lesson-5                                                 the demo
//!   make lesson-5 ARGS="server --port 7000"                       a line server for nc, socat, Python
//!   make lesson-5 ARGS="client --port 7000 half-close hello world"  our client against it
//!
//! Clients 1 to 3 are separate processes (this program again, in client mode). Client 4 is a
//! thread of the demo, because the server must tell it when to start reading.

use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{AddressFamily, MsgFlags, Shutdown, SockFlag, SockProtocol, SockType, sockopt};
use socklab::lessons::{self, Args, Context, Outcome, Role};
use socklab::sys::{self, Errno};
use socklab::trace;

/// Seed 004's tsTserv.py listens on 21567; the demo asks the kernel for any free port instead.
const DEFAULT_PORT: u16 = 21567;
/// How many finished handshakes may wait for accept (Python's `listen(5)`).
const BACKLOG: i32 = 5;
/// The server's recv buffer, deliberately tiny (Python's `recv(16)`) so that the cuts show.
/// Real servers read 4 KiB to 64 KiB at a time and meet the same cuts, only less often.
const RECV_SIZE: usize = 16;
/// The client reads the server's reply with seed 004's `BUFSIZ = 1024`.
const REPLY_SIZE: usize = 1024;
/// A line reader must bound what it holds: a line longer than this ends the conversation.
const MAX_LINE: usize = 1024;
/// No conversation takes more recvs than this; a client that keeps sending is cut off.
const MAX_RECVS: usize = 10_000;
/// Scene 4 asks for 4096-byte socket buffers (Linux doubles the value). The defaults
/// (net.ipv4.tcp_wmem and tcp_rmem: 16 KiB to send, 128 KiB to receive, growing on demand)
/// would swallow the whole payload without a short send.
const SMALL_BUFFER: usize = 4096;
/// Scene 4's payload: 12 KiB, more than the two small buffers hold together.
const PAYLOAD_SIZE: usize = 12 * 1024;
/// How many send and poll rounds the sender may take before giving up.
const MAX_SEND_ROUNDS: usize = 64;
/// How long the sender waits in poll for room in its send buffer.
const POLL_PATIENCE_MS: u16 = 5000;
/// How long the demo's actors wait for each other's word before calling it a failure.
const PATIENCE: Duration = Duration::from_secs(10);

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
                "listening on {}; try: printf 'hello\\nworld\\n' | nc -N {} {}",
                args.addr(),
                args.host,
                args.port
            ));
            loop {
                // One client's trouble (a reset, a line too long) ends that conversation only.
                if let Err(error) = serve_one(&listener) {
                    trace::say(format!("that connection failed: {error}; waiting for the next"));
                }
            }
        }
        Role::Client => {
            if trace::actor() == "main" {
                trace::set_actor("client");
            }
            client(args.addr(), &args.rest)
        }
    }
}

/// socket, bind, listen: a passive socket, ready for clients.
fn listen_on(addr: SocketAddr) -> Result<OwnedFd, String> {
    let listener = sys::socket(
        family(addr),
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Tcp,
    )
    .context("socket")?;
    sys::bind(&listener, addr).context(format!("bind {addr}"))?;
    sys::listen(&listener, BACKLOG).context("listen")?;
    Ok(listener)
}

fn family(addr: SocketAddr) -> AddressFamily {
    if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

/// `server` mode: one client at a time, each one a conversation in lines, answered at EOF.
fn serve_one(listener: &OwnedFd) -> Result<(), String> {
    let (conn, peer) = sys::accept4(listener, SockFlag::SOCK_CLOEXEC).context("accept4")?;
    trace::say(format!("connected by {peer}"));
    let outcome = converse(&conn, AtEof::Reply);
    sys::close(conn).context("close")?;
    outcome
}

/// Splits a byte stream into lines. Bytes go in as recv returns them, whole lines come out;
/// what follows the last '\n' waits in `pending` for the rest of its line.
#[derive(Default)]
struct LineReader {
    pending: Vec<u8>,
}

impl LineReader {
    fn push(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    /// The next complete line, without its "\n" (or "\r\n"); None until one is complete.
    fn next_line(&mut self) -> Result<Option<String>, String> {
        match self.pending.iter().position(|&b| b == b'\n') {
            Some(end) => {
                let mut line: Vec<u8> = self.pending.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                Ok(Some(String::from_utf8_lossy(&line).into_owned()))
            }
            None if self.pending.len() > MAX_LINE => Err(format!("a line longer than {MAX_LINE} bytes")),
            None => Ok(None),
        }
    }

    /// The start of a line whose '\n' has not arrived yet.
    fn pending(&self) -> String {
        String::from_utf8_lossy(&self.pending).into_owned()
    }
}

/// What the server does when recv returns 0.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AtEof {
    /// The client only shut down its sending side (or so we hope): answer, then close.
    Reply,
    /// The client has gone: there is nobody to answer.
    JustClose,
}

/// Reads lines from one client until it sends "byebye" (seed 002's word) or end of file.
fn converse(conn: &OwnedFd, at_eof: AtEof) -> Result<(), String> {
    let mut reader = LineReader::default();
    let mut buf = [0u8; RECV_SIZE];
    let (mut lines, mut bytes) = (0usize, 0usize);
    for _ in 0..MAX_RECVS {
        let n = sys::recv(conn, &mut buf, MsgFlags::empty()).context("recv")?;
        if n == 0 {
            if !reader.pending().is_empty() {
                trace::say(format!(
                    "end of file in mid-line: {:?} never got its newline",
                    reader.pending()
                ));
            }
            trace::say("recv returned 0: end of file, this client will send nothing more");
            if at_eof == AtEof::Reply {
                let reply = format!("server received {lines} lines ({bytes} bytes), good bye.\n");
                trace::explain("the client shut down only its sending side: it can still receive this");
                sys::send_all(conn, reply.as_bytes(), MsgFlags::MSG_NOSIGNAL).context("send")?;
            }
            return Ok(());
        }
        bytes += n;
        reader.push(&buf[..n]);
        while let Some(line) = reader.next_line()? {
            lines += 1;
            trace::say(format!("line {lines}: {line:?}"));
            if line == "byebye" {
                trace::say("\"byebye\" is the seed's goodbye: stop reading and close");
                return Ok(());
            }
        }
        if !reader.pending().is_empty() {
            trace::say(format!(
                "holding {:?} until the rest of its line arrives",
                reader.pending()
            ));
        }
    }
    Err(format!("more than {MAX_RECVS} recvs in one conversation"))
}

/// How a client sends its lines: the first word on its command line picks one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Script {
    /// One send per line, back to back, then close without reading (scene 1).
    Separate,
    /// All lines in one send, then close without reading (scene 2).
    Together,
    /// All lines in one send, shutdown(SHUT_WR), then read the reply to the end (scene 3).
    HalfClose,
}

/// `client [separate|together|half-close] LINE...`: each word is one line ("\n" is added).
fn client(server: SocketAddr, words: &[String]) -> Outcome {
    let (script, words) = match words.first().map(String::as_str) {
        Some("separate") => (Script::Separate, &words[1..]),
        Some("together") => (Script::Together, &words[1..]),
        Some("half-close") => (Script::HalfClose, &words[1..]),
        _ => (Script::HalfClose, words),
    };
    let lines: Vec<String> = if words.is_empty() {
        vec!["hello\n".into(), "world\n".into()]
    } else {
        words.iter().map(|word| format!("{word}\n")).collect()
    };
    let sock = sys::socket(
        family(server),
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Tcp,
    )
    .context("socket")?;
    sys::connect(&sock, server).context(format!("connect {server}"))?;
    match script {
        Script::Separate => {
            for line in &lines {
                sys::send_all(&sock, line.as_bytes(), MsgFlags::MSG_NOSIGNAL).context("send")?;
            }
            trace::say("three sends done; closing without waiting for an answer");
        }
        Script::Together => {
            trace::explain("one send, several lines: the kernel sees only bytes, the '\\n's mean nothing to it");
            sys::send_all(&sock, lines.concat().as_bytes(), MsgFlags::MSG_NOSIGNAL).context("send")?;
        }
        Script::HalfClose => {
            sys::send_all(&sock, lines.concat().as_bytes(), MsgFlags::MSG_NOSIGNAL).context("send")?;
            half_close_and_read_reply(&sock)?;
        }
    }
    if script == Script::Separate {
        trace::explain("our FIN goes out after the bytes we sent: a recv that reaches it returns 0");
    }
    sys::close(sock).context("close")?;
    Ok(())
}

/// shutdown(SHUT_WR) says "I have finished sending" and keeps the socket open for the answer.
fn half_close_and_read_reply(sock: &OwnedFd) -> Result<(), String> {
    trace::explain("FIN goes out, the descriptor stays open: we can no longer send, but still receive");
    sys::shutdown(sock, Shutdown::Write).context("shutdown")?;
    trace::explain("we shut down our own sending side: EPIPE, and no SIGPIPE thanks to MSG_NOSIGNAL");
    match sys::send(sock, b"one more line\n", MsgFlags::MSG_NOSIGNAL) {
        Err(Errno::EPIPE) => {}
        Ok(n) => {
            return Err(format!(
                "send after shutdown(SHUT_WR) took {n} bytes instead of failing"
            ));
        }
        Err(other) => return Err(format!("send after shutdown(SHUT_WR): {other}")),
    }
    let mut buf = [0u8; REPLY_SIZE];
    for _ in 0..MAX_RECVS {
        let n = sys::recv(sock, &mut buf, MsgFlags::empty()).context("recv")?;
        if n == 0 {
            trace::say("recv returned 0: the server has closed too; the conversation is over");
            return Ok(());
        }
        trace::say(format!("the server replied {:?}", String::from_utf8_lossy(&buf[..n])));
    }
    Err(format!("the reply took more than {MAX_RECVS} recvs"))
}

/// 26 letters over and over: easy to check that nothing was lost or reordered.
fn alphabet(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Scene 4, the sender: a send-everything loop for a non-blocking send, as Python's `sendall`
/// must do on a non-blocking socket. Tells the reader to start once the kernel has taken all
/// it can.
fn send_everything(conn: &OwnedFd, start_reading: Sender<()>) -> Result<(), String> {
    trace::explain("a small send buffer: the kernel will hold only a few KiB of ours for this socket");
    sys::setsockopt(conn, sockopt::SndBuf, &SMALL_BUFFER).context("setsockopt SO_SNDBUF")?;
    trace::explain("Linux doubles the size asked for, to leave room for its own bookkeeping");
    sys::getsockopt(conn, sockopt::SndBuf).context("getsockopt SO_SNDBUF")?;
    let payload = alphabet(PAYLOAD_SIZE);
    let mut rest = &payload[..];
    let mut start_reading = Some(start_reading);
    for round in 0..MAX_SEND_ROUNDS {
        if rest.is_empty() {
            trace::say(format!("all {PAYLOAD_SIZE} bytes handed to the kernel"));
            return Ok(());
        }
        if round == 0 {
            trace::explain("MSG_DONTWAIT: never block; take what fits and say how much that was");
        }
        match sys::send(conn, rest, MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL) {
            Ok(n) => {
                if n < rest.len() {
                    trace::say(format!("a short send: {n} of the {} bytes asked", rest.len()));
                }
                rest = &rest[n..];
            }
            Err(Errno::EAGAIN) => {
                if let Some(reader) = start_reading.take() {
                    trace::say(format!(
                        "the kernel holds {} of {PAYLOAD_SIZE} bytes and takes no more; client#4, start reading",
                        PAYLOAD_SIZE - rest.len()
                    ));
                    reader.send(()).map_err(|_| "client#4 is gone")?;
                }
                wait_until_writable(conn)?;
            }
            Err(other) => return Err(format!("send: {other}")),
        }
    }
    Err(format!(
        "{} bytes still unsent after {MAX_SEND_ROUNDS} rounds",
        rest.len()
    ))
}

/// poll for POLLOUT: sleeps until the send buffer has room again (the reader read something).
fn wait_until_writable(conn: &OwnedFd) -> Result<(), String> {
    let mut fds = [PollFd::new(conn.as_fd(), PollFlags::POLLOUT)];
    trace::explain("sleeps until the send buffer has room: that needs the peer to read and ACK");
    let ready = sys::poll::poll(&mut fds, PollTimeout::from(POLL_PATIENCE_MS)).context("poll")?;
    if ready == 0 {
        return Err(format!("no room to send after {POLL_PATIENCE_MS} ms"));
    }
    Ok(())
}

/// Scene 4, the reader: a small receive window, and nothing read until the server says so.
fn slow_reader(server: SocketAddr, connected: Sender<()>, start_reading: Receiver<()>) -> Result<(), String> {
    let sock = sys::socket(
        family(server),
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Tcp,
    )
    .context("socket")?;
    trace::explain("before connect: the window offered in the handshake is sized from SO_RCVBUF");
    sys::setsockopt(&sock, sockopt::RcvBuf, &SMALL_BUFFER).context("setsockopt SO_RCVBUF")?;
    sys::connect(&sock, server).context(format!("connect {server}"))?;
    trace::say("connected, and not reading: what the server sends piles up in the kernel");
    connected.send(()).map_err(|_| "the server has gone")?;
    start_reading
        .recv_timeout(PATIENCE)
        .map_err(|_| "the server never said to start reading")?;
    let mut everything = vec![0u8; PAYLOAD_SIZE];
    trace::explain(format!(
        "MSG_WAITALL: the kernel loops for us and returns once all {PAYLOAD_SIZE} bytes are here"
    ));
    let n = sys::recv(&sock, &mut everything, MsgFlags::MSG_WAITALL).context("recv")?;
    if everything[..n] != alphabet(PAYLOAD_SIZE)[..] {
        return Err(format!("received {n} bytes that are not the {PAYLOAD_SIZE} sent"));
    }
    trace::say(format!("all {n} bytes arrived, in the order they were sent"));
    let mut buf = [0u8; RECV_SIZE];
    let n = sys::recv(&sock, &mut buf, MsgFlags::empty()).context("recv")?;
    if n != 0 {
        return Err(format!("{n} bytes more than the server sent"));
    }
    trace::say("recv returned 0: the server closed");
    sys::close(sock).context("close")?;
    Ok(())
}

/// Words between the demo's actors; the syscalls stay on the sockets.
struct Cues {
    port: Sender<u16>,
    /// From the main thread: the client of this scene has sent everything and exited.
    client_gone: Receiver<()>,
    /// To the main thread: this scene is over, its descriptor closed.
    scene_done: Sender<()>,
    /// From client#4: connected (so its socket was made before our accept4, see below).
    reader_connected: Receiver<()>,
    /// To client#4: the kernel took all it can, start reading.
    start_reading: Sender<()>,
}

impl Cues {
    fn wait_for_client_to_leave(&self) -> Result<(), String> {
        trace::say("not reading yet: the demo holds the server back until the client has sent all and gone");
        self.client_gone
            .recv_timeout(PATIENCE)
            .map_err(|_| "the client never finished".to_string())
    }

    fn scene_done(&self) -> Result<(), String> {
        self.scene_done.send(()).map_err(|_| "the demo has gone".to_string())
    }
}

/// The server's side of the four scenes, on its own thread.
fn demo_server(cues: Cues) -> Result<(), String> {
    let listener = listen_on("127.0.0.1:0".parse().expect("a literal address"))?;
    trace::explain("port 0 asked the kernel to choose; this asks which port it chose");
    let bound = sys::getsockname(&listener).context("getsockname")?;
    let port = bound.as_sockaddr_in().map_or(0, |a| a.port());
    cues.port.send(port).map_err(|_| "the demo has gone")?;

    // Scene 1: three sends, one recv.
    let (conn, _) = sys::accept4(&listener, SockFlag::SOCK_CLOEXEC).context("accept4")?;
    cues.wait_for_client_to_leave()?;
    trace::explain("three sends, one recv: TCP kept the bytes and their order, not where each send ended");
    converse(&conn, AtEof::JustClose)?;
    sys::close(conn).context("close")?;
    cues.scene_done()?;

    // Scene 2: one send, two recvs, and a line cut in two.
    let (conn, _) = sys::accept4(&listener, SockFlag::SOCK_CLOEXEC).context("accept4")?;
    cues.wait_for_client_to_leave()?;
    trace::explain("one send of 30 bytes and room here for 16: the rest waits in the kernel for the next recv");
    converse(&conn, AtEof::JustClose)?;
    sys::close(conn).context("close")?;
    cues.scene_done()?;

    // Scene 3: the client half-closes; we read to end of file, then answer.
    let (conn, _) = sys::accept4(&listener, SockFlag::SOCK_CLOEXEC).context("accept4")?;
    converse(&conn, AtEof::Reply)?;
    sys::close(conn).context("close")?;
    cues.scene_done()?;

    // Scene 4: a short send, EAGAIN, and poll. Client#4 is a thread of this process, and a
    // blocked accept4 already holds the descriptor number it will return: wait until client#4
    // has its socket and is connected (the kernel finished the handshake), then accept.
    cues.reader_connected
        .recv_timeout(PATIENCE)
        .map_err(|_| "client#4 never connected")?;
    let (conn, _) = sys::accept4(&listener, SockFlag::SOCK_CLOEXEC).context("accept4")?;
    send_everything(&conn, cues.start_reading.clone())?;
    sys::close(conn).context("close")?;
    sys::close(listener).context("close")?;
    Ok(())
}

/// The server on a thread; clients 1 to 3 as processes, one after the other; client 4 a thread.
fn demo() -> Outcome {
    trace::set_actor("demo");
    let (port_tx, port_rx) = mpsc::channel();
    let (client_gone_tx, client_gone_rx) = mpsc::channel();
    let (scene_done_tx, scene_done_rx) = mpsc::channel();
    let (start_reading_tx, start_reading_rx) = mpsc::channel();
    let (reader_connected_tx, reader_connected_rx) = mpsc::channel();
    let cues = Cues {
        port: port_tx,
        client_gone: client_gone_rx,
        scene_done: scene_done_tx,
        reader_connected: reader_connected_rx,
        start_reading: start_reading_tx,
    };
    let server = trace::spawn("server", move || demo_server(cues));
    let port = port_rx
        .recv_timeout(PATIENCE)
        .map_err(|_| "the server thread stopped before listening")?;
    let server_addr = SocketAddr::from(([127, 0, 0, 1], port));
    let wait_for_scene = || {
        scene_done_rx
            .recv_timeout(PATIENCE)
            .map_err(|_| "the server stopped in mid-scene")
    };

    trace::say("scene 1: three sends, one recv");
    lessons::run_process("client#1", "client", port, &["separate", "one", "two", "three"])?;
    client_gone_tx.send(()).map_err(|_| "the server has gone")?;
    wait_for_scene()?;

    trace::say("scene 2: one send, two recvs, and a line reader");
    lessons::run_process(
        "client#2",
        "client",
        port,
        &["together", "first line", "second line", "byebye"],
    )?;
    client_gone_tx.send(()).map_err(|_| "the server has gone")?;
    wait_for_scene()?;

    trace::say("scene 3: shutdown(SHUT_WR), and the reply still arrives");
    lessons::run_process("client#3", "client", port, &["half-close", "hello", "world"])?;
    wait_for_scene()?;

    trace::say("scene 4: a short send, EAGAIN, and poll until the reader reads");
    let reader = trace::spawn("client#4", move || {
        slow_reader(server_addr, reader_connected_tx, start_reading_rx)
    });
    let reader_result = reader.join().map_err(|_| "client#4 panicked")?;
    if reader_result.is_err() && !server.is_finished() {
        // The server may be waiting in accept4 for a client that will not come.
        return Ok(reader_result?);
    }
    server.join().map_err(|_| "the server panicked")??;
    Ok(reader_result?)
}
