//! Lesson 17's reactor keeps its promises, with real sockets on loopback and real peers.
//!
//! The first tests compile the lesson's own `main.rs` in and drive its `Reactor` with handlers
//! of their own, over each backend it runs on (select, poll, epoll): a handler is called for
//! its descriptor with the readiness it asked for; one that closes itself, or closes another
//! descriptor the same wait reported, is safe, and a number closed and handed out again in the
//! same wake never gets the old socket's event; timers fire no sooner than their delay, the
//! wait sleeping until then, earliest first, never once cancelled. The last ones run the
//! lesson's `server` mode against nc, socat, Python and a slow std reader: the echo, the idle
//! timer as the wait's timeout, and backpressure.
//!
//! socklab's own driver (`src/serve`) is a reactor of the same shape, and one test runs it in
//! this process too: with `until_empty` its loop stops by itself once the room is empty, as a
//! lesson's demo needs.
//!
//! Descriptor numbers matter here (a closed number is handed out again), so the tests run one
//! at a time: no other test of this file opens a descriptor meanwhile.

#[path = "programs/chat/mod.rs"]
mod chat;
#[allow(dead_code)]
#[path = "../lessons/17-reactor/main.rs"]
mod lesson;
mod util;

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use lesson::{Handler, Reactor};
use nix::fcntl::{FcntlArg, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use socklab::serve::epoll::Epoll;
use socklab::serve::poll::Poll;
use socklab::serve::select::Select;
use socklab::serve::{Backend, Interest, Readiness};
use socklab::trace::{self, Mode, expected};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs one test at a time, with the trace off (these tests make calls of their own).
fn alone() -> MutexGuard<'static, ()> {
    trace::set_mode(Mode::Off);
    ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
}

const WRITE: Interest = Interest {
    read: false,
    write: true,
    urgent: false,
};

/// A connected pair on loopback: our end, non-blocking, for the reactor; the peer's.
fn connection(listener: &TcpListener) -> (OwnedFd, TcpStream) {
    let peer = TcpStream::connect(listener.local_addr().expect("its address")).expect("connect");
    let (ours, _) = listener.accept().expect("accept");
    ours.set_nonblocking(true).expect("O_NONBLOCK");
    (OwnedFd::from(ours), peer)
}

fn listener() -> TcpListener {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind")
}

/// Waits until every one of `fds` is readable, so that one wait reports them all.
fn until_readable(fds: &[&OwnedFd]) {
    for fd in fds {
        let mut set = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        let ready = poll(&mut set, PollTimeout::from(5000u16)).expect("poll");
        assert_eq!(ready, 1, "fd {} never became readable", fd.as_raw_fd());
    }
}

/// What handlers saw: (who, descriptor, readiness, the wait that reported it).
type Calls = Rc<RefCell<Vec<(&'static str, RawFd, Readiness, u64)>>>;

/// A handler that records its call, then closes the descriptors `then_close` (its own, if
/// listed) in that order.
fn recorder<B: Backend>(who: &'static str, calls: &Calls, then_close: Vec<RawFd>) -> Handler<B> {
    let calls = Rc::clone(calls);
    Box::new(move |reactor, fd, ready| {
        calls.borrow_mut().push((who, fd, ready, reactor.waits));
        for &other in &then_close {
            reactor.close(other);
        }
    })
}

fn handlers_get_their_descriptor_and_readiness<B: Backend>(backend: B) {
    let listener = listener();
    let (quiet, _quiet_peer) = connection(&listener);
    let (talker, mut talker_peer) = connection(&listener);
    let (writable, _writable_peer) = connection(&listener);
    let (q, t, w) = (quiet.as_raw_fd(), talker.as_raw_fd(), writable.as_raw_fd());
    talker_peer.write_all(b"x").expect("write");
    until_readable(&[&talker]);

    let calls: Calls = Rc::default();
    let mut reactor = Reactor::new(backend);
    reactor
        .register(quiet, Interest::READ, recorder("quiet", &calls, vec![q]))
        .expect("register");
    reactor
        .register(talker, Interest::READ, recorder("talker", &calls, vec![t]))
        .expect("register");
    reactor
        .register(writable, WRITE, recorder("writable", &calls, vec![w]))
        .expect("register");
    // The quiet one is never ready: a timer ends its registration, and with it the run.
    reactor.call_later(Duration::from_millis(100), move |reactor| reactor.close(q));
    reactor.run().expect("run");
    reactor.shut_down();

    let calls = calls.borrow();
    assert_eq!(calls.len(), 2, "{calls:?}");
    let talker_call = calls
        .iter()
        .find(|c| c.0 == "talker")
        .expect("the talker's handler was called");
    assert_eq!(talker_call.1, t, "a handler is given its own descriptor");
    assert!(talker_call.2.contains(Readiness::READABLE) && !talker_call.2.contains(Readiness::WRITABLE));
    let writable_call = calls
        .iter()
        .find(|c| c.0 == "writable")
        .expect("the writable one's handler was called");
    assert_eq!(writable_call.1, w);
    assert!(writable_call.2.contains(Readiness::WRITABLE) && !writable_call.2.contains(Readiness::READABLE));
}

#[test]
fn a_handler_is_called_for_its_own_descriptor_with_what_it_asked_for() {
    let _alone = alone();
    handlers_get_their_descriptor_and_readiness(Select::new());
    handlers_get_their_descriptor_and_readiness(Poll::new());
    handlers_get_their_descriptor_and_readiness(Epoll::new().expect("epoll"));
}

fn closing_another_ready_one_drops_its_event<B: Backend>(backend: B) {
    let listener = listener();
    let (one, mut one_peer) = connection(&listener);
    let (two, mut two_peer) = connection(&listener);
    let (a, b) = (one.as_raw_fd(), two.as_raw_fd());
    one_peer.write_all(b"1").expect("write");
    two_peer.write_all(b"2").expect("write");
    until_readable(&[&one, &two]);

    let calls: Calls = Rc::default();
    let mut reactor = Reactor::new(backend);
    // Whichever is called first closes the other, then itself.
    reactor
        .register(one, Interest::READ, recorder("one", &calls, vec![b, a]))
        .expect("register");
    reactor
        .register(two, Interest::READ, recorder("two", &calls, vec![a, b]))
        .expect("register");
    reactor.run().expect("run");
    reactor.shut_down();

    let calls = calls.borrow();
    assert_eq!(calls.len(), 1, "both were ready, one closed the other: {calls:?}");
    assert_eq!(calls[0].3, 1, "in the first wake");
}

#[test]
fn a_handler_that_closes_another_ready_descriptor_drops_that_ones_event() {
    let _alone = alone();
    closing_another_ready_one_drops_its_event(Select::new());
    closing_another_ready_one_drops_its_event(Poll::new());
    closing_another_ready_one_drops_its_event(Epoll::new().expect("epoll"));
}

fn a_reused_number_gets_no_stale_event<B: Backend>(backend: B) {
    let listener = listener();
    let (one, mut one_peer) = connection(&listener);
    let (two, mut two_peer) = connection(&listener);
    let (a, b) = (one.as_raw_fd(), two.as_raw_fd());
    // A third client, queued at the listener, has already said something.
    let mut third_peer = TcpStream::connect(listener.local_addr().expect("its address")).expect("connect");
    third_peer.write_all(b"3").expect("write");
    one_peer.write_all(b"1").expect("write");
    two_peer.write_all(b"2").expect("write");
    until_readable(&[&one, &two]);

    let calls: Calls = Rc::default();
    let mut reactor = Reactor::new(backend);
    let newcomer = Rc::new(RefCell::new(None));
    // Whichever is called first closes the other, accepts the third client under the number
    // just freed, registers it, and closes itself.
    for (socket, me, other) in [(one, a, b), (two, b, a)] {
        let (calls, listener) = (Rc::clone(&calls), listener.try_clone().expect("dup"));
        let newcomer = Rc::clone(&newcomer);
        let handler: Handler<B> = Box::new(move |reactor, fd, ready| {
            calls.borrow_mut().push(("first", fd, ready, reactor.waits));
            reactor.close(other);
            let (third, _) = listener.accept().expect("accept");
            third.set_nonblocking(true).expect("O_NONBLOCK");
            let mut third = OwnedFd::from(third);
            if third.as_raw_fd() != other {
                // A lower number was free: the lowest from `other` up is `other`, just closed.
                let moved = fcntl(&third, FcntlArg::F_DUPFD_CLOEXEC(other)).expect("F_DUPFD_CLOEXEC");
                // SAFETY: fcntl just returned this descriptor, a fresh duplicate nothing else owns.
                third = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(moved) };
            }
            let moved = third.as_raw_fd();
            assert_eq!(moved, other, "the newcomer has the closed one's number");
            *newcomer.borrow_mut() = Some(moved);
            let handler = recorder("newcomer", &calls, vec![moved]);
            reactor.register(third, Interest::READ, handler).expect("register");
            reactor.close(me);
        });
        reactor.register(socket, Interest::READ, handler).expect("register");
    }
    reactor.run().expect("run");
    reactor.shut_down();

    let calls = calls.borrow();
    let who: Vec<_> = calls.iter().map(|c| (c.0, c.3)).collect();
    assert_eq!(
        who,
        [("first", 1), ("newcomer", 2)],
        "the first wait reported both; the newcomer took the other's number in that wake, and is \
         called only from the next wait, for its own bytes: {calls:?}"
    );
    assert_eq!(Some(calls[1].1), *newcomer.borrow());
}

#[test]
fn a_number_closed_and_handed_out_again_in_one_wake_gets_no_stale_event() {
    let _alone = alone();
    a_reused_number_gets_no_stale_event(Select::new());
    a_reused_number_gets_no_stale_event(Poll::new());
    a_reused_number_gets_no_stale_event(Epoll::new().expect("epoll"));
}

fn closing_itself_ends_the_calls<B: Backend>(backend: B) {
    let listener = listener();
    let (socket, mut peer) = connection(&listener);
    peer.write_all(b"ten bytes!").expect("write");
    until_readable(&[&socket]);
    let fd = socket.as_raw_fd();
    let calls: Calls = Rc::default();
    let mut reactor = Reactor::new(backend);
    let record = Rc::clone(&calls);
    let handler: Handler<B> = Box::new(move |reactor, fd, ready| {
        record.borrow_mut().push(("self", fd, ready, reactor.waits));
        let mut one = [0u8; 1];
        let socket = reactor.socket(fd).expect("still registered");
        assert_eq!(
            socklab::sys::recv(socket, &mut one, nix::sys::socket::MsgFlags::empty()),
            Ok(1)
        );
        reactor.close(fd); // nine bytes left: level-triggered, it would be reported again
    });
    reactor.register(socket, Interest::READ, handler).expect("register");
    reactor.run().expect("run");
    assert_eq!(reactor.registered(), 0);
    reactor.shut_down();
    assert_eq!(calls.borrow().len(), 1, "{:?}", calls.borrow());
    assert_eq!(calls.borrow()[0].1, fd);
}

#[test]
fn a_handler_that_closes_itself_is_not_called_again() {
    let _alone = alone();
    closing_itself_ends_the_calls(Select::new());
    closing_itself_ends_the_calls(Poll::new());
    closing_itself_ends_the_calls(Epoll::new().expect("epoll"));
}

fn a_timer_waits_its_delay_in_one_wait<B: Backend>(backend: B) {
    const DELAY: Duration = Duration::from_millis(150);
    let start = Instant::now();
    let mut reactor = Reactor::new(backend);
    let fired = Rc::new(RefCell::new(None));
    let record = Rc::clone(&fired);
    reactor.call_later(DELAY, move |reactor| {
        *record.borrow_mut() = Some((Instant::now(), reactor.waits))
    });
    reactor.run().expect("run");
    reactor.shut_down();
    let (at, waits) = fired.borrow().expect("the timer fired");
    assert!(
        at - start >= DELAY,
        "fired after {:?}, sooner than {DELAY:?}",
        at - start
    );
    assert_eq!(waits, 1, "one wait, with the timer's delay as its timeout: no spinning");
}

#[test]
fn a_timer_fires_no_sooner_than_its_delay_and_the_loop_sleeps_until_then() {
    let _alone = alone();
    a_timer_waits_its_delay_in_one_wait(Select::new());
    a_timer_waits_its_delay_in_one_wait(Poll::new());
    a_timer_waits_its_delay_in_one_wait(Epoll::new().expect("epoll"));
}

#[test]
fn timers_run_earliest_first_and_a_cancelled_one_never_runs() {
    let _alone = alone();
    let mut reactor = Reactor::new(Epoll::new().expect("epoll"));
    let ran: Rc<RefCell<Vec<(&str, u64)>>> = Rc::default();
    let note = |name: &'static str| {
        let ran = Rc::clone(&ran);
        move |reactor: &mut Reactor<Epoll>| ran.borrow_mut().push((name, reactor.waits))
    };
    let late = reactor.call_later(Duration::from_millis(60), note("60 ms, cancelled by the 20 ms one"));
    let cancelled = reactor.call_later(Duration::from_millis(30), note("30 ms, cancelled at once"));
    reactor.call_later(Duration::from_millis(80), note("80 ms"));
    let twenty = note("20 ms");
    let soon = note("0 ms, set by the 20 ms one");
    reactor.call_later(Duration::from_millis(20), move |reactor| {
        twenty(reactor);
        reactor.cancel(late);
        reactor.call_later(Duration::ZERO, soon);
    });
    reactor.cancel(cancelled);
    reactor.run().expect("run");
    reactor.shut_down();
    let ran = ran.borrow();
    let names: Vec<&str> = ran.iter().map(|r| r.0).collect();
    assert_eq!(names, ["20 ms", "0 ms, set by the 20 ms one", "80 ms"]);
    assert_eq!(
        ran[1].1,
        ran[0].1 + 1,
        "a timer set by a timer runs after the next wait, even with no delay"
    );
}

/// In a program (a lesson's demo, say) socklab's own loop stops by itself: with `until_empty` it
/// returns once the last client has left, having closed every client socket.
#[test]
fn the_loop_can_stop_once_the_room_is_empty() {
    use chat::{Peer, WAIT};
    use socklab::serve::{self, Options};
    let _alone = alone();
    let listener = serve::listen("127.0.0.1:0".parse().unwrap()).expect("listening");
    let port = serve::local_addr(&listener).expect("its port").port();
    let options = Options {
        tick: std::time::Duration::from_millis(100),
        max_iterations: Some(10_000), // a bound, should the stop never come
        until_empty: true,
        ..Options::default()
    };
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let room = socklab::chat::Room::new(|| "12:00:00".to_string());
        let _ = done_tx.send(serve::select::serve(&listener, room, &options));
    });
    let mut a = Peer::tcp(port);
    let mut b = Peer::tcp(port);
    a.expect_notice(&format!("{} joined", b.name));
    a.say("exit");
    b.expect_notice(&format!("{} left (exit)", a.name));
    b.close_input();
    assert_eq!(b.expect_closed(), "end of file");
    let summary = done_rx
        .recv_timeout(WAIT)
        .expect("the loop stopped")
        .expect("it ran without error");
    assert_eq!(summary.served, 2);
}

// ---------------------------------------------------------------------------------------------
// The lesson's server mode, with real peers.
// ---------------------------------------------------------------------------------------------

const PEER_LIMIT: Duration = Duration::from_secs(20);

/// A server of the lesson's, and its trace as it comes.
struct Server {
    child: Child,
    port: u16,
    trace: std::sync::Arc<Mutex<String>>,
}

/// `lesson-17 server --port P WORDS...` with a plain trace, once it listens.
fn start_server(words: &[&str]) -> Server {
    let port = util::free_port();
    let mut child = Command::new(util::lesson_program(17))
        .args(["server", "--port", &port.to_string()])
        .args(words)
        .env("SOCKLAB_TRACE", "plain")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting lesson-17 server");
    let stdout = BufReader::new(child.stdout.take().expect("its stdout"));
    let trace = std::sync::Arc::new(Mutex::new(String::new()));
    let collected = std::sync::Arc::clone(&trace);
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let mut text = collected.lock().unwrap_or_else(PoisonError::into_inner);
            text.push_str(&line);
            text.push('\n');
        }
    });
    let server = Server { child, port, trace };
    if !server.shows("» echo on") {
        panic!("lesson-17 server never said it listens:\n{}", server.stop());
    }
    server
}

impl Server {
    /// Whether the trace shows `text` within [`PEER_LIMIT`] (it prints each line 40 ms late).
    fn shows(&self, text: &str) -> bool {
        let mut seen: usize = 0; // what was looked through already (the trace can be megabytes)
        util::tcp::wait_until(PEER_LIMIT, || {
            let trace = self.trace.lock().unwrap_or_else(PoisonError::into_inner);
            let mut from = seen.saturating_sub(text.len());
            while !trace.is_char_boundary(from) {
                from -= 1;
            }
            seen = trace.len();
            trace[from..].contains(text)
        })
    }

    /// Stops the server (by its PID) and returns its trace.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.trace.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Once its trace shows `last`, stops it and returns its lines, halves joined.
    fn stop_after(self, last: &str) -> Vec<String> {
        let shown = self.shows(last);
        let text = self.stop();
        assert!(shown, "the server's trace never showed {last:?}:\n{text}");
        expected::by_actor(&text).remove("server").unwrap_or_default()
    }
}

fn shell(script: &str) -> String {
    let mut command = Command::new("sh");
    command.args(["-c", script]);
    let output = util::run_with_deadline(command, PEER_LIMIT);
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn nc_socat_and_python_get_their_lines_back_on_every_backend() {
    let _alone = alone();
    util::require("nc");
    util::require("socat");
    util::require("python3");
    // The mux, and the system call its wait is in the kernel.
    for (mux, wait) in [("epoll", "epoll_wait("), ("poll", "poll("), ("select", "pselect6(")] {
        let server = start_server(&[mux]);
        let port = server.port;
        let from_nc = shell(&format!("printf 'via nc\\n' | nc -N 127.0.0.1 {port}"));
        let from_socat = shell(&format!("printf 'via socat\\n' | socat -t 5 - TCP:127.0.0.1:{port}"));
        let from_python = shell(&format!(
            "python3 -c \"import socket; s = socket.create_connection(('127.0.0.1', {port})); \
             s.sendall(b'via python\\n'); s.shutdown(socket.SHUT_WR); \
             print(b''.join(iter(lambda: s.recv(100), b'')).decode(), end='')\""
        ));
        let lines = server.stop_after("close(");
        assert_eq!(from_nc, "via nc\n", "{mux}");
        assert_eq!(from_socat, "via socat\n", "{mux}");
        assert_eq!(from_python, "via python\n", "{mux}");
        assert!(
            lines.iter().any(|l| l.starts_with(wait)),
            "{mux}: the server never waited in {wait}...):\n{}",
            lines.join("\n")
        );
    }
}

#[test]
fn the_idle_timer_is_the_waits_timeout_and_lets_a_silent_client_go_no_sooner() {
    let _alone = alone();
    util::require("python3");
    let server = start_server(&["epoll", "0.3"]);
    let port = server.port;
    // Two lines, each echoed; then silence until the server closes. The client times its
    // silence from its last send, which comes before the server's last wake.
    let script = format!(
        "import socket, time\n\
         s = socket.create_connection(('127.0.0.1', {port}))\n\
         for line in (b'one\\n', b'two\\n'):\n\
         \x20   sent = time.monotonic()\n\
         \x20   s.sendall(line)\n\
         \x20   assert s.recv(100) == line\n\
         assert s.recv(100) == b''\n\
         print(time.monotonic() - sent)\n"
    );
    let mut command = Command::new("python3");
    command.args(["-c", &script]);
    let output = util::run_with_deadline(command, PEER_LIMIT);
    let lines = server.stop_after("its timer lets it go");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let silence: f64 = String::from_utf8_lossy(&output.stdout).trim().parse().expect("seconds");
    assert!(silence >= 0.3, "let go after {silence} s of silence, sooner than 0.3 s");

    // While the client is connected, every wait's timeout is its idle timer's: 300 ms, counted
    // afresh from each wake that heard it; the last one runs out, and the timer closes it.
    let waits: Vec<&String> = lines
        .iter()
        .skip_while(|l| !l.starts_with("accept4("))
        .take_while(|l| !l.starts_with("close("))
        .filter(|l| l.starts_with("epoll_wait("))
        .collect();
    assert_eq!(waits.len(), 3, "one, two, then silence: {waits:#?}");
    assert!(waits.iter().all(|w| w.contains("], 128, 300)")), "{waits:#?}");
    assert!(waits[2].starts_with("epoll_wait(4, [], 128, 300)") && waits[2].ends_with("= 0"));
    assert!(
        lines
            .iter()
            .any(|l| l.contains("said nothing for 300 ms: its timer lets it go")),
        "{lines:#?}"
    );
}

#[test]
fn a_client_that_reads_late_gets_every_byte_and_the_echo_waits_for_writability() {
    let _alone = alone();
    // More than the kernel holds for the two sockets together: the server's send buffer grows
    // at most to tcp_wmem's maximum (4 MiB here), the client's receive buffer is 8 KiB.
    let most_sent: usize = util::tcp::sysctl("net/ipv4/tcp_wmem")
        .split_whitespace()
        .last()
        .and_then(|max| max.parse().ok())
        .expect("tcp_wmem's maximum");
    let payload_len = most_sent + (1 << 20);
    let server = start_server(&["epoll", "60"]);
    // A small receive buffer, set before connect, so the window it offers is small.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, server.port));
    socket.connect(&addr.into()).expect("connect");
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(PEER_LIMIT)).expect("SO_RCVTIMEO");
    let sent: Vec<u8> = (0..payload_len).map(|i| (i % 251) as u8).collect();
    let mut writer = stream.try_clone().expect("dup");
    let payload = sent.clone();
    let sender = std::thread::spawn(move || {
        writer.write_all(&payload).expect("write");
        writer.shutdown(Shutdown::Write).expect("shutdown");
    });
    // Not reading yet: the server's sends fill what the kernel holds for it, until one meets
    // EAGAIN and its handler asks for writability instead of reading more.
    let waited = server.shows("{events=EPOLLOUT,");
    let mut echoed = Vec::new();
    (&stream)
        .take(payload_len as u64 + 1)
        .read_to_end(&mut echoed)
        .expect("read");
    sender.join().expect("the sender");
    let lines = server.stop_after("close(5");
    assert!(waited, "the server never asked for writability");
    assert_eq!(echoed.len(), payload_len, "every byte came back, and then end of file");
    assert!(echoed == sent, "in order");
    let interest: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("epoll_ctl(4, EPOLL_CTL_MOD, 5,"))
        .collect();
    assert!(
        interest.first().is_some_and(|l| l.contains("{events=EPOLLOUT,"))
            && interest.last().is_some_and(|l| l.contains("{events=EPOLLIN,")),
        "write interest while an echo waited, read interest back once it went: {interest:#?}"
    );
    // What made it wait: a send that took less than offered, or none of it (EAGAIN).
    let short = lines
        .iter()
        .filter_map(|l| sent_and_offered(l))
        .any(|(sent, offered)| sent < offered);
    assert!(short, "no send was short of what it offered");
}

/// `sendto(5, "...", 1024, MSG_NOSIGNAL, NULL, 0) = 512`: (512, 1024); EAGAIN: (0, 1024).
fn sent_and_offered(line: &str) -> Option<(usize, usize)> {
    let (call, result) = line.strip_prefix("sendto(5, ")?.rsplit_once(" = ")?;
    let offered = call
        .strip_suffix(", MSG_NOSIGNAL, NULL, 0)")?
        .trim_end()
        .rsplit_once(", ")?
        .1;
    let sent = if result.starts_with("-1 EAGAIN") {
        0
    } else {
        result.trim().parse().ok()?
    };
    Some((sent, offered.parse().ok()?))
}
