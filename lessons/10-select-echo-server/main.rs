//! Lesson 10: an echo server for many clients on one thread, with select(2).
//!
//! Seed 003's server skeleton, reduced to an echo: the listening socket and every client go in
//! one read set; select says which are readable; a readable listener has a connection waiting
//! (accept won't block), a readable client has bytes or end of file (recv won't block). No
//! thread or process per client, and still nobody waits for anybody else's conversation.
//!
//!   make lesson-10                                 the demo: three client processes at once
//!   make lesson-10 ARGS="server --port 7000"       the server; then several `nc 127.0.0.1 7000`
//!   make lesson-10 ARGS="client --port 7000"       a client: each line you type comes back
//!
//! In the demo this program's main thread plays the keyboard: it types into the three
//! clients' stdin (pipes) one line at a time, waiting each time until the server has gone
//! round its loop (staged, through /proc), so the server's trace is the same every run.

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, sockopt};
use nix::sys::time::{TimeVal, TimeValLike};
use socklab::lessons::stage::{Looper, Typist};
use socklab::lessons::{self, Args, Context, Outcome, Role};
use socklab::sys::select::FdSet;
use socklab::{sys, trace};

/// The seed's server listens on 33333.
const DEFAULT_PORT: u16 = 33333;
/// The seed's `listen(self.__client_nums)` with `client_nums=10`.
const BACKLOG: i32 = 10;
/// The seed's `self.__buffer_size = 1024`.
const RECV_SIZE: usize = 1024;
/// select wakes up after this long with nothing to do, says so, and waits again.
const IDLE_SECS: i64 = 60;
/// Every loop ends by itself: the server after this many select calls, a client after this
/// many lines.
const MAX_ROUNDS: usize = 100_000;
const MAX_LINES: usize = 1000;
/// How many clients the demo runs, all connected at once.
const DEMO_CLIENTS: usize = 3;
/// The demo gives up if the server has not gone round its loop in this long.
const DEMO_PATIENCE: Duration = Duration::from_secs(10);
/// The syscall the server's loop waits in: select(2) is pselect6.
const SELECT: &[i64] = &[libc::SYS_pselect6];

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
                "listening on {}; try several at once: nc {} {}",
                args.addr(),
                args.host,
                args.port
            ));
            serve(&listener, None)?;
            sys::close(listener).context("close")?;
            Ok(())
        }
        Role::Client => {
            if trace::actor() == "main" {
                trace::set_actor("client");
            }
            echo_lines_from_stdin(args.addr())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The server.

fn family(addr: SocketAddr) -> AddressFamily {
    if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

/// socket, SO_REUSEADDR (the seed sets it: a restart need not wait for TIME_WAIT), bind, listen.
fn listen_on(addr: SocketAddr) -> Result<OwnedFd, String> {
    let listener = sys::socket(
        family(addr),
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Tcp,
    )
    .context("socket")?;
    sys::setsockopt(&listener, sockopt::ReuseAddr, &true).context("setsockopt SO_REUSEADDR")?;
    sys::bind(&listener, addr).context(format!("bind {addr}"))?;
    sys::listen(&listener, BACKLOG).context("listen")?;
    Ok(listener)
}

/// One connected client: its socket and who it is.
struct Client {
    sock: OwnedFd,
    peer: String,
}

/// The loop: build the read set, select, collect the ready descriptors, then act on each.
/// Seed 003's `Server.run`, its chat reduced to an echo (the Python is beside it in the
/// README). With `stop_after`, returns once that many clients have come and all have gone.
fn serve(listener: &OwnedFd, stop_after: Option<usize>) -> Result<(), String> {
    let mut clients: Vec<Client> = Vec::new();
    let mut accepted = 0;
    let mut first_round = true;
    for _ in 0..MAX_ROUNDS {
        if stop_after.is_some_and(|n| accepted >= n) && clients.is_empty() {
            trace::say(format!("all {accepted} clients came and went; the demo's server stops"));
            return Ok(());
        }
        // Never change the client list while walking the set: we collect the ready numbers,
        // let the set go, and only then accept or drop clients (a client closed mid-walk could
        // see its number handed to a newcomer, which the rest of the walk would take for it).
        // readable, _, _ = select.select(self.inputs, [], [], timeout)
        let ready: Vec<RawFd> = {
            let mut readfds = FdSet::new();
            readfds.insert(listener.as_raw_fd());
            for client in &clients {
                readfds.insert(client.sock.as_raw_fd());
            }
            // Re-armed every round: select leaves only what was left of it.
            let mut timeout = TimeVal::seconds(IDLE_SECS);
            if first_round {
                trace::explain("the listener alone in the read set: readable means a connection is waiting");
                first_round = false;
            }
            let n = sys::select::select(Some(&mut readfds), None, None, Some(&mut timeout)).context("select")?;
            if n == 0 {
                trace::say(format!("nothing happened for {IDLE_SECS} s; still waiting"));
            }
            readfds.fds().collect()
        };
        for fd in ready {
            // if s is self.server: connection, client_address = s.accept()
            if fd == listener.as_raw_fd() {
                if let Some(client) = accept_one(listener)? {
                    clients.push(client);
                    accepted += 1;
                }
                continue;
            }
            let index = clients
                .iter()
                .position(|client| client.sock.as_raw_fd() == fd)
                .ok_or_else(|| format!("select returned fd {fd}, which is not ours"))?;
            // data = s.recv(1024); if data: (echo it) else: self.inputs.remove(s); s.close()
            match echo_once(&clients[index]) {
                Ok(true) => {}
                Ok(false) => {
                    let client = clients.remove(index);
                    trace::say(format!("{} left; {} still connected", client.peer, clients.len()));
                    sys::close(client.sock).context("close")?;
                }
                // One client's trouble (a reset, say) ends that client, not the server.
                Err(error) => {
                    let client = clients.remove(index);
                    trace::say(format!("{}: {error}; dropping it", client.peer));
                    sys::close(client.sock).context("close")?;
                }
            }
        }
    }
    Ok(())
}

/// The listener was readable, so a finished handshake is queued: accept4 returns at once.
fn accept_one(listener: &OwnedFd) -> Result<Option<Client>, String> {
    trace::explain("select said the listener is readable: a connection is queued, so this does not block");
    let (sock, peer) = sys::accept4(listener, SockFlag::SOCK_CLOEXEC).context("accept4")?;
    let peer = peer.to_string();
    // An fd_set has room for descriptors 0 to 1023 only (lesson 12).
    if !sys::select::fits(&sock) {
        trace::say(format!(
            "{peer} got fd {}, too high for select; refusing it",
            sock.as_raw_fd()
        ));
        sys::close(sock).context("close")?;
        return Ok(None);
    }
    trace::say(format!("{peer} connected as fd {}", sock.as_raw_fd()));
    Ok(Some(Client { sock, peer }))
}

/// The client was readable: one recv returns at once. Echo what came; false at end of file.
fn echo_once(client: &Client) -> Result<bool, String> {
    let mut buf = [0u8; RECV_SIZE];
    let n = sys::recv(&client.sock, &mut buf, MsgFlags::empty()).context("recv")?;
    if n == 0 {
        return Ok(false);
    }
    sys::send_all(&client.sock, &buf[..n], MsgFlags::MSG_NOSIGNAL).context("send")?;
    Ok(true)
}

// ---------------------------------------------------------------------------------------------
// The client: each line read from stdin goes to the server, and the echo comes back.

fn echo_lines_from_stdin(server: SocketAddr) -> Outcome {
    let sock = sys::socket(
        family(server),
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Tcp,
    )
    .context("socket")?;
    sys::connect(&sock, server).context(format!("connect {server}"))?;
    let stdin = std::io::stdin();
    let mut line = [0u8; RECV_SIZE];
    let mut echo = [0u8; RECV_SIZE];
    for round in 0..MAX_LINES {
        // Every read explained: the table's note for read speaks of sockets, and stdin is not one.
        if round == 0 {
            trace::explain("waits for a line typed at stdin (in the demo, a pipe the keyboard types into)");
        } else {
            trace::explain("the next line, or 0 at end of input (Ctrl-D; in the demo, the keyboard closing its pipe)");
        }
        let n = sys::read(stdin.as_fd(), &mut line).context("read stdin")?;
        if n == 0 {
            trace::say("end of stdin: closing the connection");
            break;
        }
        sys::send_all(&sock, &line[..n], MsgFlags::MSG_NOSIGNAL).context("send")?;
        // TCP is a byte stream: collect until as many bytes came back as went out.
        let mut got = 0;
        while got < n {
            let m = sys::recv(&sock, &mut echo[got..n], MsgFlags::empty()).context("recv")?;
            if m == 0 {
                return Err("the server closed the connection".into());
            }
            got += m;
        }
        trace::say(format!("echoed {:?}", String::from_utf8_lossy(&echo[..n])));
    }
    trace::explain("our FIN: the server's select reports this socket readable, and its recv returns 0");
    sys::close(sock).context("close")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The demo: a server thread, three client processes, and a keyboard typing into them in turn.
//
// The keyboard stands in for you at three terminals. It is stage machinery (its typing is
// narrated, not traced), and so is the way it waits: after each thing it does, until the
// server has gone round its loop once and sleeps in select again.

fn demo() -> Outcome {
    trace::set_actor("keyboard");
    let (started, listening) = mpsc::channel();
    let server = trace::spawn("server", move || -> Result<(), String> {
        let listener = listen_on("127.0.0.1:0".parse().expect("a literal address"))?;
        let bound = sys::getsockname(&listener).context("getsockname")?;
        let port = bound.as_sockaddr_in().map_or(0, |a| a.port());
        started.send((port, nix::unistd::gettid())).map_err(|e| e.to_string())?;
        serve(&listener, Some(DEMO_CLIENTS))?;
        sys::close(listener).context("close")?;
        Ok(())
    });
    let (port, server_tid) = listening
        .recv()
        .map_err(|_| "the server thread stopped before listening")?;
    let server_loop = Looper::new(server_tid, SELECT)?;
    let mut rounds = server_loop
        .asleep(DEMO_PATIENCE)
        .ok_or("the server never waited in select")?;
    let mut went_round = || -> Result<(), String> {
        rounds = server_loop
            .went_round(rounds, DEMO_PATIENCE)
            .ok_or_else(|| format!("the server did not go round its loop in {DEMO_PATIENCE:?}"))?;
        Ok(())
    };
    let port = port.to_string();

    // The clients come one after another and each says hello; all three stay connected.
    let mut clients = Vec::new();
    for number in 1..=DEMO_CLIENTS {
        let client = Typist::start(&format!("client#{number}"), &["client", "--port", &port])?;
        went_round()?;
        client.types(&format!("hello from {}\n", client.name()))?;
        went_round()?;
        clients.push(client);
    }
    // Now they take turns, in an order no one-client-at-a-time server could follow.
    for (index, text) in [(1, "two speaks\n"), (0, "one speaks\n"), (2, "three speaks\n")] {
        clients[index].types(text)?;
        went_round()?;
    }
    // client#2 leaves in the middle; the others carry on.
    clients[1].presses_ctrl_d();
    went_round()?;
    clients[0].types("one is still here\n")?;
    went_round()?;
    clients[0].presses_ctrl_d();
    went_round()?;
    // The last one to leave ends the demo's server, which stops instead of going round again.
    clients[2].presses_ctrl_d();
    for client in clients {
        client.wait()?;
    }
    server.join().map_err(|_| "the server panicked")??;
    Ok(())
}
