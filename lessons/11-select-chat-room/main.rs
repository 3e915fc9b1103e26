//! Lesson 11: the select chat room, seed 003's `Server` and `Client` done with system calls.
//!
//! The server is the room of `src/chat` driven by the select backend of `src/serve/select.rs`
//! (and the driver all the loops share): every time round it copies three master fd_sets
//! (read: the listener and every client; write: only the clients whose last send met EAGAIN;
//! except: every client), calls select, and then receives once from each ready client, sends at
//! once what the room queued, accepts, and closes whoever left. The client is
//! `src/serve/client.rs`: one select watches the keyboard and the socket, where the seed ran
//! two threads.
//!
//!   make lesson-11                                  the demo: the room and three clients
//!   make lesson-11 ARGS="server --port 7000"        the room, for nc, socat, socklab chat-client
//!   make lesson-11 ARGS="client --port 7000"        the select chat client, for a room you started
//!
//! In the demo the server runs on a thread of this program and the three clients are this
//! program again, in `client` mode, as separate processes. Each client's terminal is played
//! by the demo (the `terminals` actor): it types into them and reads their screens, and it
//! types the next line only once every screen shows what the last one caused. So the server
//! sees one thing happen per select, and its trace is the same on every run. The room's
//! clock is fixed at 12:00:00 in the demo for the same reason.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::fcntl::FcntlArg;
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, sockopt};
use socklab::chat::{self, Room};
use socklab::lessons::{self, Args, Context, Outcome, Role};
use socklab::serve::{self, Options, client::Ending};
use socklab::{sys, trace};

/// The demo room's clock: the time in every line, fixed so that two runs print the same bytes.
const DEMO_CLOCK: &str = "12:00:00";
/// The seed's `g_select_timeout = 10`: select wakes after 10 s even if nothing happened.
const TICK: Duration = Duration::from_secs(10);
/// The demo's 9 selects, and room to spare: a bound, should the room never empty.
const DEMO_MAX_SELECTS: u64 = 100;
/// `server` mode runs until Ctrl-C, or this many selects.
const SERVER_MAX_SELECTS: u64 = 10_000_000;
/// The seed's `self.__buffer_size = 1024` was too small for a line and its stamp; 4096 is the
/// room's inbox, the most it reads from a client at once.
const RECV_SIZE: usize = 4096;
/// How long the demo waits for a screen to show a line, or a client to end.
const PATIENCE: Duration = Duration::from_secs(10);

fn main() {
    lessons::main(serve::DEFAULT_PORT, run);
}

fn run(args: Args) -> Outcome {
    match args.role {
        Role::Demo => demo(),
        Role::Server => {
            trace::set_actor("server");
            let listener = serve::listen(args.addr())?;
            let port = serve::local_addr(&listener)?.port();
            trace::say(format!(
                "the room listens on {}:{port}; try: socklab chat-client --port {port}, nc {} {port}",
                args.host, args.host
            ));
            let options = Options {
                tick: TICK,
                max_iterations: Some(SERVER_MAX_SELECTS),
                until_empty: false,
                ..Options::default()
            };
            serve::select::serve(&listener, Room::new(chat::utc_clock), &options)?;
            sys::close(listener).context("close")?;
            Ok(())
        }
        Role::Client => {
            if trace::actor() == "main" {
                trace::set_actor("client");
            }
            let stdin = std::io::stdin();
            let stdout = std::io::stdout();
            match args.rest.iter().map(String::as_str).collect::<Vec<_>>()[..] {
                [] => chat_client(args.addr(), stdin.as_fd(), stdout.as_fd()),
                // The demo's terminals: one socket carries the typing in and the screen out.
                ["screen-on-stdin"] => chat_client(args.addr(), stdin.as_fd(), stdin.as_fd()),
                ["vanisher"] => vanisher(args.addr()),
                _ => Err(format!(
                    "client takes no words (the demo uses screen-on-stdin and vanisher); got {:?}",
                    args.rest
                )
                .into()),
            }
        }
    }
}

/// The select chat client: what you type goes to the room, what the room sends goes to the
/// screen, until you type `exit` or end the input (Ctrl-D).
fn chat_client(server: SocketAddr, keyboard: BorrowedFd<'_>, screen: BorrowedFd<'_>) -> Outcome {
    match serve::client::run(server, keyboard, screen)? {
        Ending::Left => trace::say("we left and the server closed the connection"),
        Ending::LeftUnanswered => trace::say("we left; the server never closed, so we closed first"),
        Ending::ServerClosed => return Err("the server closed the connection".into()),
    }
    Ok(())
}

/// A program that dies in the middle of a sentence. It sends what is typed at it as it is,
/// newline or not, and when its terminal closes it "crashes": SO_LINGER 0 makes close send a
/// reset (RST) instead of the polite FIN, so the server finds a dead connection, not a goodbye.
fn vanisher(server: SocketAddr) -> Outcome {
    let terminal = std::io::stdin();
    let family = if server.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let sock = sys::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, SockProtocol::Tcp).context("socket")?;
    sys::connect(&sock, server).context(format!("connect {server}"))?;
    let mut buf = [0u8; RECV_SIZE];
    trace::explain("the room's welcome, the one line on its way to us now");
    let n = sys::recv(&sock, &mut buf, MsgFlags::empty()).context("recv")?;
    hears(&buf[..n]);
    trace::explain("what is typed at us, sent as it is: a line, a command and half a line");
    let n = sys::read(terminal.as_fd(), &mut buf).context("read the terminal")?;
    sys::send_all(&sock, &buf[..n], MsgFlags::MSG_NOSIGNAL).context("send")?;
    trace::explain("the answer to /who: proof that the server has read all we sent, the half line too");
    let n = sys::recv(&sock, &mut buf, MsgFlags::empty()).context("recv")?;
    hears(&buf[..n]);
    trace::explain("0: the demo closed our terminal, the signal to crash");
    let n = sys::read(terminal.as_fd(), &mut buf).context("read the terminal")?;
    if n != 0 {
        return Err("the vanisher expected its terminal to close".into());
    }
    let abort = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    trace::explain("linger on, for 0 seconds: close will throw away what is unsent and send RST");
    sys::setsockopt(&sock, sockopt::Linger, &abort).context("setsockopt SO_LINGER")?;
    trace::explain("RST, not FIN: the server's next recv on this connection fails with ECONNRESET");
    sys::close(sock).context("close")?;
    Ok(())
}

/// Narrates each line the vanisher heard.
fn hears(bytes: &[u8]) {
    for line in String::from_utf8_lossy(bytes).lines() {
        trace::say(format!("hears: {line}"));
    }
}

// ---------------------------------------------------------------------------------------------
// The demo: the room on a thread, three clients as processes, and their terminals played here.

/// The room on 127.0.0.1, on a port the kernel picks; stops once everyone has left.
fn demo_server(port_tx: mpsc::Sender<u16>) -> Result<(), String> {
    let listener = serve::listen("127.0.0.1:0".parse().expect("a literal address"))?;
    trace::explain("port 0 asked the kernel to choose; this asks which port it chose");
    let port = serve::local_addr(&listener)?.port();
    port_tx.send(port).map_err(|e| e.to_string())?;
    let options = Options {
        tick: TICK,
        max_iterations: Some(DEMO_MAX_SELECTS),
        until_empty: true,
        ..Options::default()
    };
    let room = Room::new(|| DEMO_CLOCK.to_string());
    let summary = serve::select::serve(&listener, room, &options)?;
    trace::say(format!(
        "the room is empty again: {} clients served in {} selects",
        summary.served, summary.iterations
    ));
    sys::close(listener).context("close")?;
    Ok(())
}

fn demo() -> Outcome {
    trace::set_actor("terminals");
    // The terminals are made first and moved out of the way (64 and up) before the server
    // takes its descriptor numbers, so the server's trace shows the same numbers on every run.
    // They are the demo's plumbing, not the lesson: narrated, not traced.
    let mut terminals = Vec::new();
    for name in ["client#1", "client#2", "client#3"] {
        terminals.push(Terminal::new(name)?);
    }
    let [mut one, mut two, mut three] = <[Terminal; 3]>::try_from(terminals).map_err(|_| "three terminals")?;

    let (port_tx, port_rx) = mpsc::channel();
    let server = trace::spawn("server", move || demo_server(port_tx));
    let port = port_rx
        .recv()
        .map_err(|_| "the server thread stopped before listening")?;

    // Two people join, one after the other, each with the select chat client.
    one.start(port, "screen-on-stdin")?;
    one.sees("welcome")?;
    two.start(port, "screen-on-stdin")?;
    two.sees("welcome")?;
    one.sees("joined")?;

    // They talk: each line reaches the other, stamped with the time and who said it.
    one.types("hello, room\n")?;
    two.sees("say: hello, room")?;
    two.types("hi, one\n")?;
    one.sees("say: hi, one")?;

    // A third joins, says a line, asks who is here, starts another line and vanishes.
    three.start(port, "vanisher")?;
    one.sees("joined")?;
    two.sees("joined")?;
    three.types("hi all, I'm new here\n/who\nbrb, my connection is fl")?;
    one.sees("say: hi all")?;
    two.sees("say: hi all")?;
    three.closes();
    one.sees("left (connection failed)")?;
    two.sees("left (connection failed)")?;
    three.ends()?;

    // client#1 leaves with the seed's word, client#2 with end of input.
    one.types("exit\n")?;
    two.sees("left (exit)")?;
    one.ends()?;
    two.presses_ctrl_d();
    two.ends()?;

    server.join().map_err(|_| "the server panicked")??;
    Ok(())
}

/// The demo's descriptors start here, out of the way of the server's numbers. All of the
/// terminals' work is a stage (`trace::stage`): plumbing, not the lesson.
const PLUMBING_FDS: RawFd = 64;

/// Moves a descriptor to the lowest free number from [`PLUMBING_FDS`] up (and closes the old one).
fn out_of_the_way(fd: OwnedFd) -> Result<OwnedFd, String> {
    let high = nix::fcntl::fcntl(&fd, FcntlArg::F_DUPFD_CLOEXEC(PLUMBING_FDS)).context("fcntl F_DUPFD_CLOEXEC")?;
    // SAFETY: fcntl just returned this descriptor, a fresh duplicate that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(high) })
}

/// A client's terminal: a socketpair, one end the client's stdin (it reads the typing and, for
/// the chat client, writes the screen there), the other end ours.
struct Terminal {
    name: &'static str,
    ours: UnixStream,
    theirs: Option<OwnedFd>,
    child: Option<Child>,
    /// What the screen showed after its last whole line.
    unread: Vec<u8>,
}

impl Terminal {
    fn new(name: &'static str) -> Result<Terminal, String> {
        trace::stage(|| {
            let (ours, theirs) = UnixStream::pair().context("socketpair")?;
            let ours = UnixStream::from(out_of_the_way(OwnedFd::from(ours))?);
            let theirs = out_of_the_way(OwnedFd::from(theirs))?;
            Ok(Terminal {
                name,
                ours,
                theirs: Some(theirs),
                child: None,
                unread: Vec::new(),
            })
        })
    }

    /// Starts this program as a client (`words` say which kind) with this terminal as stdin.
    fn start(&mut self, port: u16, words: &str) -> Result<(), String> {
        let theirs = self.theirs.take().ok_or("this terminal's client already started")?;
        let kind = if words == "vanisher" {
            "a program that will vanish in mid-line"
        } else {
            "the select chat client"
        };
        trace::say(format!(
            "starts {}: {kind}, its stdin a terminal played by the demo",
            self.name
        ));
        let program = std::env::current_exe().context("finding this program")?;
        let child = trace::stage(|| {
            Command::new(program)
                .args(["client", "--port", &port.to_string(), "--actor", self.name, words])
                .env(trace::TRACE_ENV, trace::mode().name())
                .stdin(Stdio::from(theirs))
                .spawn()
        })
        .context(format!("starting {}", self.name))?;
        self.child = Some(child);
        Ok(())
    }

    fn types(&mut self, text: &str) -> Result<(), String> {
        trace::say(format!("types {text:?} at {}", self.name));
        trace::stage(|| self.ours.write_all(text.as_bytes())).context(format!("typing at {}", self.name))
    }

    /// Waits for the screen's next whole line, says what it is, and checks it holds `want`.
    fn sees(&mut self, want: &str) -> Result<(), String> {
        let line = trace::stage(|| self.next_line(want))?;
        trace::say(format!("{}'s screen: {line}", self.name));
        if line.contains(want) {
            Ok(())
        } else {
            Err(format!("{}'s screen showed {line:?}, not {want:?}", self.name))
        }
    }

    /// The screen's next whole line, waited for (bounded).
    fn next_line(&mut self, want: &str) -> Result<String, String> {
        let deadline = Instant::now() + PATIENCE;
        while !self.unread.contains(&b'\n') {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("{}'s screen showed no {want:?} in {PATIENCE:?}", self.name));
            }
            self.ours.set_read_timeout(Some(left)).context("SO_RCVTIMEO")?;
            let mut chunk = [0u8; RECV_SIZE];
            match self.ours.read(&mut chunk) {
                Ok(0) => return Err(format!("{}'s terminal closed before showing {want:?}", self.name)),
                Ok(n) => self.unread.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) => return Err(format!("reading {}'s screen: {e}", self.name)),
            }
        }
        let end = self.unread.iter().position(|&b| b == b'\n').unwrap_or(0);
        let line: Vec<u8> = self.unread.drain(..=end).collect();
        Ok(String::from_utf8_lossy(&line[..end]).into_owned())
    }

    /// Like Ctrl-D in a terminal: the client's next read of its stdin returns 0.
    fn presses_ctrl_d(&mut self) {
        trace::say(format!("presses Ctrl-D at {}", self.name));
        let _ = trace::stage(|| self.ours.shutdown(std::net::Shutdown::Write));
    }

    /// The terminal goes away (for the vanisher, the signal to crash).
    fn closes(&mut self) {
        trace::say(format!("closes {}'s terminal", self.name));
        let _ = trace::stage(|| self.ours.shutdown(std::net::Shutdown::Both));
    }

    /// Waits (bounded) for the client to exit, and fails the demo unless it exited with 0.
    fn ends(&mut self) -> Result<(), String> {
        let mut child = self.child.take().ok_or("that client never started")?;
        let name = self.name;
        let status = trace::stage(|| {
            let deadline = Instant::now() + PATIENCE;
            loop {
                if let Some(status) = child.try_wait().context(format!("waiting for {name}"))? {
                    return Ok(status);
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("{name} did not end within {PATIENCE:?}; killed it"));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })?;
        if !status.success() {
            return Err(format!("{name} ended with {status}"));
        }
        trace::say(format!("{name} has ended"));
        Ok(())
    }
}
