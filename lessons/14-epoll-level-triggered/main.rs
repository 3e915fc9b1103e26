//! Lesson 14: epoll, level-triggered: an interest list the kernel keeps, and a wait that
//! returns only what is ready.
//!
//! select and poll hand the kernel every descriptor on every call. epoll splits that in two:
//! `epoll_ctl` adds, changes or removes one descriptor in an *interest list* that lives in the
//! kernel between calls, and `epoll_wait` returns the *ready list*: only the descriptors that
//! are ready now. By default epoll is level-triggered, like select and poll: a socket with
//! unread bytes is reported on every wait until it is drained.
//!
//!   make lesson-14                                 the demo: one server, one client process
//!   make lesson-14 ARGS="server --port 7000"       an epoll echo server; then `nc 127.0.0.1 7000`
//!   make lesson-14 ARGS="client --port 7000 hi"    a client: each word is sent and echoed
//!   make lesson-14 ARGS="server chat"              seed 003's chat room, on level-triggered epoll
//!
//! The demo's server runs on this program's one thread and shows, step by step: the interest
//! list (read back from `/proc/self/fdinfo`), EEXIST for a second ADD, three bytes read one at a
//! time giving three wake-ups, EPOLL_CTL_MOD to ask for writability and back, and a `dup`ed
//! descriptor that keeps a closed one's registration alive.

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, sockopt};
use socklab::chat::{self, Room};
use socklab::lessons::{self, Args, Context, Outcome, Role, stage};
use socklab::serve::{self, Options};
use socklab::sys::epoll as ep;
use socklab::sys::{self, Errno};
use socklab::trace;

/// The seed's chat server listens on 33333; this echo server does too unless told otherwise.
const DEFAULT_PORT: u16 = 33333;
/// Finished handshakes the kernel may queue before we accept them.
const BACKLOG: i32 = 10;
/// How many ready descriptors one epoll_wait may return (its `maxevents`). More may be
/// ready: the next call returns the rest.
const MAX_EVENTS: usize = 8;
/// Bytes asked for in one recv (the seed's buffer size).
const RECV_SIZE: usize = 1024;
/// The demo's server gives up on a client that has done nothing for this long (milliseconds).
const PATIENCE_MS: u16 = 5000;
/// Every loop ends by itself: the server after this many waits, a byte-at-a-time read after
/// this many bytes.
const MAX_ROUNDS: usize = 100_000;
const MAX_BYTES_ONE_BY_ONE: usize = 64;

fn main() {
    lessons::main(DEFAULT_PORT, run);
}

fn run(args: Args) -> Outcome {
    match args.role {
        Role::Demo => demo(),
        Role::Server if args.rest.iter().any(|word| word == "chat") => {
            trace::set_actor("server");
            let listener = serve::listen(args.addr())?;
            trace::say(format!(
                "the chat room listens on {}; try: socklab chat-client --port {}, or nc {} {}",
                args.addr(),
                args.port,
                args.host,
                args.port
            ));
            serve::epoll::serve(&listener, Room::new(chat::utc_clock), &Options::default())?;
            sys::close(listener).context("close")?;
            Ok(())
        }
        Role::Server => {
            trace::set_actor("server");
            let listener = listen_on(args.addr())?;
            trace::say(format!(
                "listening on {}; try several at once: nc {} {}",
                args.addr(),
                args.host,
                args.port
            ));
            serve(&listener)?;
            sys::close(listener).context("close")?;
            Ok(())
        }
        Role::Client => {
            if trace::actor() == "main" {
                trace::set_actor("client");
            }
            let words = if args.rest.is_empty() {
                vec!["hello".to_string()]
            } else {
                args.rest.clone()
            };
            talk(args.addr(), &words)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Pieces both the demo and server mode use.

/// socket, SO_REUSEADDR, bind, listen: a passive socket, ready for clients.
fn listen_on(addr: SocketAddr) -> Result<OwnedFd, String> {
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let listener =
        sys::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, SockProtocol::Tcp).context("socket")?;
    sys::setsockopt(&listener, sockopt::ReuseAddr, &true).context("setsockopt SO_REUSEADDR")?;
    sys::bind(&listener, addr).context(format!("bind {addr}"))?;
    sys::listen(&listener, BACKLOG).context("listen")?;
    Ok(listener)
}

/// What we ask epoll to watch for `fd`. The `data` field is ours: the kernel stores it with
/// the entry and hands it back in every event. Here it is the descriptor number, the usual choice.
fn interest(flags: EpollFlags, fd: &impl AsFd) -> EpollEvent {
    EpollEvent::new(flags, fd.as_fd().as_raw_fd() as u64)
}

/// Says what the kernel keeps in the interest list: `/proc/self/fdinfo/EPFD` has one `tfd:`
/// line per entry, with the events asked for. Reading /proc is us looking on, not part of the
/// server, so it is stage machinery and makes no line in the trace.
fn show_interest_list(epoll: &Epoll) {
    let entries: Vec<String> = stage::epoll_interest(&epoll.0)
        .into_iter()
        .map(|(fd, events)| format!("fd {fd} ({events})"))
        .collect();
    let list = if entries.is_empty() {
        "empty".to_string()
    } else {
        entries.join(", ")
    };
    trace::say(format!(
        "the interest list in the kernel (/proc/self/fdinfo/{}): {list}",
        epoll.0.as_raw_fd()
    ));
}

/// How long the demo's server waits for client#1 before giving up.
fn patience() -> EpollTimeout {
    EpollTimeout::from(PATIENCE_MS)
}

/// The descriptor numbers in the events epoll_wait filled in (our `data`, given back).
fn ready_fds(events: &[EpollEvent]) -> Vec<RawFd> {
    events.iter().map(|event| event.data() as RawFd).collect()
}

// ---------------------------------------------------------------------------------------------
// Server mode: an echo server on level-triggered epoll, for nc, socat or Python.

fn serve(listener: &OwnedFd) -> Result<(), String> {
    let epoll = ep::epoll_create1(EpollCreateFlags::EPOLL_CLOEXEC).context("epoll_create1")?;
    ep::epoll_ctl_add(&epoll, listener, interest(EpollFlags::EPOLLIN, listener)).context("epoll_ctl ADD")?;
    let mut clients: Vec<OwnedFd> = Vec::new();
    let mut events = [EpollEvent::empty(); MAX_EVENTS];
    for _ in 0..MAX_ROUNDS {
        let n = ep::epoll_wait(&epoll, &mut events, EpollTimeout::NONE).context("epoll_wait")?;
        for fd in ready_fds(&events[..n]) {
            if fd == listener.as_raw_fd() {
                // Level-triggered: if several connections wait, the listener is reported again
                // next time, so one accept per wake-up is enough.
                let (conn, peer) = sys::accept4(listener, SockFlag::SOCK_CLOEXEC).context("accept4")?;
                ep::epoll_ctl_add(&epoll, &conn, interest(EpollFlags::EPOLLIN, &conn)).context("epoll_ctl ADD")?;
                trace::say(format!("{peer} connected as fd {}", conn.as_raw_fd()));
                clients.push(conn);
                continue;
            }
            let Some(index) = clients.iter().position(|c| c.as_raw_fd() == fd) else {
                return Err(format!("epoll_wait returned fd {fd}, which is not ours"));
            };
            let mut buf = [0u8; RECV_SIZE];
            let done = match sys::recv(&clients[index], &mut buf, MsgFlags::empty()) {
                Ok(0) => true,
                Ok(n) => sys::send_all(&clients[index], &buf[..n], MsgFlags::MSG_NOSIGNAL).is_err(),
                Err(_) => true,
            };
            if done {
                let conn = clients.remove(index);
                trace::explain("take it off the interest list first, then close: the safe order");
                ep::epoll_ctl_del(&epoll, &conn).context("epoll_ctl DEL")?;
                sys::close(conn).context("close")?;
                trace::say(format!("fd {fd} left; {} still connected", clients.len()));
            }
        }
    }
    for conn in clients {
        sys::close(conn).context("close")?;
    }
    sys::close(epoll.0).context("close")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Client mode: each word is sent, and its echo awaited, before the next.

fn talk(server: SocketAddr, words: &[String]) -> Outcome {
    let family = if server.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let sock = sys::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, SockProtocol::Tcp).context("socket")?;
    sys::connect(&sock, server).context(format!("connect {server}"))?;
    let mut buf = [0u8; RECV_SIZE];
    for word in words {
        let bytes = word.as_bytes();
        if bytes.len() > RECV_SIZE {
            return Err(format!("a word of at most {RECV_SIZE} bytes, please").into());
        }
        sys::send_all(&sock, bytes, MsgFlags::MSG_NOSIGNAL).context("send")?;
        // A byte stream: collect until as many bytes came back as went out.
        let mut got = 0;
        while got < bytes.len() {
            let n = sys::recv(&sock, &mut buf[got..bytes.len()], MsgFlags::empty()).context("recv")?;
            if n == 0 {
                return Err("the server closed the connection".into());
            }
            got += n;
        }
        trace::say(format!("the server echoed {:?}", String::from_utf8_lossy(&buf[..got])));
    }
    trace::explain("our FIN: the server's epoll_wait reports the socket readable, and its recv returns 0");
    sys::close(sock).context("close")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The demo: the server, step by step, on this thread; one client process.

fn demo() -> Outcome {
    trace::set_actor("server");
    let listener = listen_on("127.0.0.1:0".parse().expect("a literal address"))?;
    let port = sys::getsockname(&listener)
        .context("getsockname")?
        .as_sockaddr_in()
        .map_or(0, |a| a.port());

    trace::say("1. an epoll instance and its interest list");
    trace::explain("an epoll instance is a descriptor too: 4; it holds the interest list in the kernel");
    let epoll = ep::epoll_create1(EpollCreateFlags::EPOLL_CLOEXEC).context("epoll_create1")?;
    trace::explain("the listener joins the interest list once; no epoll_wait passes it again");
    ep::epoll_ctl_add(&epoll, &listener, interest(EpollFlags::EPOLLIN, &listener)).context("epoll_ctl ADD")?;
    show_interest_list(&epoll);
    trace::say("EPOLLERR and EPOLLHUP were added by the kernel: they are always reported, asked for or not");
    trace::explain("the same descriptor twice: refused; EPOLL_CTL_MOD is how an entry changes");
    match ep::epoll_ctl_add(&epoll, &listener, interest(EpollFlags::EPOLLIN, &listener)) {
        Err(Errno::EEXIST) => {}
        Ok(()) => return Err("a second EPOLL_CTL_ADD succeeded; expected EEXIST".into()),
        Err(error) => return Err(format!("epoll_ctl ADD: {error}").into()),
    }
    let mut events = [EpollEvent::empty(); MAX_EVENTS];
    trace::explain("timeout 0: only look. Nobody has connected, so the ready list is empty");
    ep::epoll_wait(&epoll, &mut events, EpollTimeout::ZERO).context("epoll_wait")?;

    trace::say("2. a client connects; epoll says the listener is ready");
    // client#1 sends "abc", waits for the echo, sends "x", waits for the echo, and closes.
    let client = lessons::spawn_process("client#1", "client", port, &["abc", "x"]).context("client#1")?;
    trace::explain("sleeps until an entry is ready: a finished handshake makes the listener readable");
    let n = ep::epoll_wait(&epoll, &mut events, patience()).context("epoll_wait")?;
    if ready_fds(&events[..n]) != [listener.as_raw_fd()] {
        return Err("client#1 never connected".into());
    }
    let (conn, peer) = sys::accept4(&listener, SockFlag::SOCK_CLOEXEC).context("accept4")?;
    trace::say(format!("{peer} connected as fd {}", conn.as_raw_fd()));
    ep::epoll_ctl_add(&epoll, &conn, interest(EpollFlags::EPOLLIN, &conn)).context("epoll_ctl ADD")?;
    show_interest_list(&epoll);

    trace::say("3. level-triggered: unread bytes are reported on every wait");
    let wakeups = read_one_byte_per_wakeup(&epoll, &conn, &listener)?;
    trace::say(format!(
        "{} bytes read one per wake-up: epoll_wait reported fd {} {} times, and once they were gone, not again",
        wakeups.len(),
        conn.as_raw_fd(),
        wakeups.len()
    ));

    trace::say("4. EPOLL_CTL_MOD: writability, asked for only while there is something to write");
    trace::explain("MOD changes the entry in place: now we care only whether fd 5 can take bytes");
    ep::epoll_ctl_mod(&epoll, &conn, interest(EpollFlags::EPOLLOUT, &conn)).context("epoll_ctl MOD")?;
    for round in 0..2 {
        if round == 1 {
            trace::explain(
                "nothing was written, and it is reported again: leave EPOLLOUT on and every wait returns at once",
            );
        }
        ep::epoll_wait(&epoll, &mut events, patience()).context("epoll_wait")?;
    }
    sys::send_all(&conn, &wakeups, MsgFlags::MSG_NOSIGNAL).context("send")?;
    trace::explain("written; back to reading, so the next wait sleeps until the client speaks");
    ep::epoll_ctl_mod(&epoll, &conn, interest(EpollFlags::EPOLLIN, &conn)).context("epoll_ctl MOD")?;

    trace::say("5. the entry belongs to the open socket, not to the number: dup, then close the original");
    trace::explain("a second descriptor for the same open socket");
    let copy = sys::dup(&conn).context("dup")?;
    let (conn_fd, copy_fd) = (conn.as_raw_fd(), copy.as_raw_fd());
    trace::explain("fd 5 is gone, but fd 6 keeps the socket open, and with it the epoll entry");
    sys::close(conn).context("close")?;
    show_interest_list(&epoll);
    trace::explain("client#1 sends \"x\": the event names fd 5, a number that is closed");
    let n = ep::epoll_wait(&epoll, &mut events, patience()).context("epoll_wait")?;
    if ready_fds(&events[..n]) != [conn_fd] {
        return Err("expected an event for the closed fd 5".into());
    }
    trace::say(format!(
        "fd {conn_fd} is closed, yet epoll reported it: the entry lives as long as the open socket does"
    ));
    trace::explain("fd 6 was never added: the entry is keyed by (open socket, fd 5), so DEL by fd 6 finds nothing");
    match ep::epoll_ctl_del(&epoll, &copy) {
        Err(Errno::ENOENT) => {}
        Ok(()) => return Err("EPOLL_CTL_DEL by the dup succeeded; expected ENOENT".into()),
        Err(error) => return Err(format!("epoll_ctl DEL: {error}").into()),
    }
    let mut buf = [0u8; RECV_SIZE];
    let n = sys::recv(&copy, &mut buf, MsgFlags::empty()).context("recv")?;
    sys::send_all(&copy, &buf[..n], MsgFlags::MSG_NOSIGNAL).context("send")?;
    trace::explain("client#1 closed: end of file is readable too, and still reported as fd 5");
    ep::epoll_wait(&epoll, &mut events, patience()).context("epoll_wait")?;
    let n = sys::recv(&copy, &mut buf, MsgFlags::empty()).context("recv")?;
    if n != 0 {
        return Err(format!("expected end of file on fd {copy_fd}, got {n} bytes").into());
    }
    trace::explain("the last descriptor of the socket: now the kernel drops the entry");
    sys::close(copy).context("close")?;
    show_interest_list(&epoll);

    trace::say("6. tidy up: DEL before close, then close the epoll instance");
    ep::epoll_ctl_del(&epoll, &listener).context("epoll_ctl DEL")?;
    sys::close(listener).context("close")?;
    trace::explain("closing the epoll instance frees its interest list");
    sys::close(epoll.0).context("close")?;
    lessons::wait_process("client#1", client)?;
    Ok(())
}

/// Waits, reads one byte, waits again: level-triggered epoll reports the socket as long as a
/// byte is left. The first wait sleeps until the client's bytes arrive; the later ones only
/// look (timeout 0), and the first that finds nothing ends the loop. Returns the bytes read.
fn read_one_byte_per_wakeup(epoll: &Epoll, conn: &OwnedFd, listener: &OwnedFd) -> Result<Vec<u8>, String> {
    let mut events = [EpollEvent::empty(); MAX_EVENTS];
    let mut bytes = Vec::new();
    for round in 0..MAX_BYTES_ONE_BY_ONE {
        let timeout = if round == 0 {
            trace::explain("two entries in the interest list, one in the ready list: only fd 5 comes back");
            patience()
        } else {
            match round {
                1 => trace::explain("nothing new arrived, but bytes remain unread: reported again"),
                2 => trace::explain("and again: one wake-up per byte, for as long as one is left"),
                _ => {}
            }
            EpollTimeout::ZERO
        };
        let n = ep::epoll_wait(epoll, &mut events, timeout).context("epoll_wait")?;
        let ready = ready_fds(&events[..n]);
        if ready.contains(&listener.as_raw_fd()) {
            return Err("an unexpected second connection".into());
        }
        if n == 0 {
            if round == 0 {
                return Err("client#1 sent nothing".into());
            }
            return Ok(bytes);
        }
        let mut one = [0u8; 1];
        if round == 0 {
            trace::explain("one byte only, on purpose: two stay in the socket's receive buffer");
        }
        let got = sys::recv(conn, &mut one, MsgFlags::empty()).context("recv")?;
        if got == 0 {
            return Err("client#1 closed early".into());
        }
        bytes.push(one[0]);
    }
    Err(format!("more than {MAX_BYTES_ONE_BY_ONE} bytes; the demo expected 3"))
}
