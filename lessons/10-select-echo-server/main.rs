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
//! clients' stdin (pipes) one line at a time, waiting each time until the server has done
//! its part, so the server's trace is the same every run.

use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::fcntl::{FcntlArg, OFlag};
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, sockopt};
use nix::sys::time::{TimeVal, TimeValLike};
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
/// The demo gives up if the server has not reported an event in this long.
const DEMO_PATIENCE: Duration = Duration::from_secs(10);

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
            serve(&listener, None, |_| {})?;
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

/// What the server did, for the demo's keyboard to wait on (server mode ignores them).
#[derive(Debug, PartialEq, Eq)]
enum Event {
    Accepted,
    Echoed,
    Removed,
}

/// One connected client: its socket and who it is.
struct Client {
    sock: OwnedFd,
    peer: String,
}

/// The loop: build the read set, select, collect the ready descriptors, then act on each.
/// With `stop_after`, returns once that many clients have come and all of them have gone.
fn serve(listener: &OwnedFd, stop_after: Option<usize>, tell: impl Fn(Event)) -> Result<(), String> {
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
            if fd == listener.as_raw_fd() {
                if let Some(client) = accept_one(listener)? {
                    clients.push(client);
                    accepted += 1;
                    tell(Event::Accepted);
                }
                continue;
            }
            let index = clients
                .iter()
                .position(|client| client.sock.as_raw_fd() == fd)
                .ok_or_else(|| format!("select returned fd {fd}, which is not ours"))?;
            match echo_once(&clients[index]) {
                Ok(true) => tell(Event::Echoed),
                Ok(false) => {
                    let client = clients.remove(index);
                    trace::say(format!("{} left; {} still connected", client.peer, clients.len()));
                    sys::close(client.sock).context("close")?;
                    tell(Event::Removed);
                }
                // One client's trouble (a reset, say) ends that client, not the server.
                Err(error) => {
                    let client = clients.remove(index);
                    trace::say(format!("{}: {error}; dropping it", client.peer));
                    sys::close(client.sock).context("close")?;
                    tell(Event::Removed);
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
        if round == 0 {
            trace::explain("waits for a line from stdin (a terminal delivers one line per read)");
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
// The keyboard stands in for you at three terminals. Its pipes are plumbing, not the lesson:
// they are moved to descriptors 64 and up, out of the way of the server's numbers, and its
// typing is narrated rather than traced (a traced write would print those high numbers).

/// Where the keyboard's pipe ends go: above any number the server's sockets take.
const PLUMBING_FDS: RawFd = 64;

/// Moves a descriptor to the lowest free number from [`PLUMBING_FDS`] up (and closes the old one).
fn out_of_the_way(fd: OwnedFd) -> Result<OwnedFd, String> {
    let high = nix::fcntl::fcntl(&fd, FcntlArg::F_DUPFD_CLOEXEC(PLUMBING_FDS)).context("fcntl F_DUPFD_CLOEXEC")?;
    // SAFETY: fcntl just returned this descriptor, a fresh duplicate that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(high) })
}

/// A client process and the pipe its stdin reads from.
struct Typist {
    name: String,
    child: Child,
    keys: Option<File>,
}

impl Typist {
    /// Starts this program again as a client whose stdin is a pipe we hold the other end of.
    fn start(name: &str, port: u16) -> Result<Typist, String> {
        let (reader, writer) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("pipe2")?;
        let reader = out_of_the_way(reader)?;
        let writer = File::from(out_of_the_way(writer)?);
        let program = std::env::current_exe().context("finding this program")?;
        let child = Command::new(program)
            .args(["client", "--port", &port.to_string(), "--actor", name])
            .env("SOCKLAB_TRACE", trace::mode().name())
            .stdin(Stdio::from(reader))
            .spawn()
            .context(format!("starting {name}"))?;
        Ok(Typist {
            name: name.to_string(),
            child,
            keys: Some(writer),
        })
    }

    fn types(&self, text: &str) -> Result<(), String> {
        trace::say(format!("types {text:?} into {}", self.name));
        let mut keys = self.keys.as_ref().ok_or("that client's stdin is closed")?;
        keys.write_all(text.as_bytes())
            .context(format!("typing into {}", self.name))
    }

    /// Like Ctrl-D in a terminal: the client's next read of stdin returns 0.
    fn presses_ctrl_d(&mut self) {
        trace::say(format!("presses Ctrl-D in {}'s terminal", self.name));
        drop(self.keys.take());
    }
}

fn demo() -> Outcome {
    trace::set_actor("keyboard");
    let (port_tx, port_rx) = mpsc::channel();
    let (event_tx, events) = mpsc::channel();
    let server = trace::spawn("server", move || -> Result<(), String> {
        let listener = listen_on("127.0.0.1:0".parse().expect("a literal address"))?;
        let bound = sys::getsockname(&listener).context("getsockname")?;
        port_tx
            .send(bound.as_sockaddr_in().map_or(0, |a| a.port()))
            .map_err(|e| e.to_string())?;
        serve(&listener, Some(DEMO_CLIENTS), |event| {
            let _ = event_tx.send(event);
        })?;
        sys::close(listener).context("close")?;
        Ok(())
    });
    let port = port_rx
        .recv()
        .map_err(|_| "the server thread stopped before listening")?;
    let wait_for = |want: Event| -> Result<(), String> {
        match events.recv_timeout(DEMO_PATIENCE) {
            Ok(got) if got == want => Ok(()),
            Ok(got) => Err(format!("expected the server to report {want:?}, it reported {got:?}")),
            Err(_) => Err(format!("the server reported nothing for {DEMO_PATIENCE:?}")),
        }
    };

    // The clients come one after another and each says hello; all three stay connected.
    let mut clients = Vec::new();
    for number in 1..=DEMO_CLIENTS {
        let client = Typist::start(&format!("client#{number}"), port)?;
        wait_for(Event::Accepted)?;
        client.types(&format!("hello from {}\n", client.name))?;
        wait_for(Event::Echoed)?;
        clients.push(client);
    }
    // Now they take turns, in an order no one-client-at-a-time server could follow.
    for (index, text) in [(1, "two speaks\n"), (0, "one speaks\n"), (2, "three speaks\n")] {
        clients[index].types(text)?;
        wait_for(Event::Echoed)?;
    }
    // client#2 leaves in the middle; the others carry on.
    clients[1].presses_ctrl_d();
    wait_for(Event::Removed)?;
    clients[0].types("one is still here\n")?;
    wait_for(Event::Echoed)?;
    for index in [0, 2] {
        clients[index].presses_ctrl_d();
        wait_for(Event::Removed)?;
    }
    for mut client in clients {
        let status = client.child.wait().context(format!("waiting for {}", client.name))?;
        if !status.success() {
            return Err(format!("{} ended with {status}", client.name).into());
        }
    }
    server.join().map_err(|_| "the server panicked")??;
    Ok(())
}
