//! Lesson 19: signals in the event loop: EINTR and SA_RESTART, the race a flag leaves open, and
//! the two ways a loop closes it: the self-pipe trick and signalfd.
//!
//! A signal that arrives while a call waits runs its handler, and then the call either goes on
//! waiting (the kernel restarts it: `SA_RESTART`) or fails with `EINTR`. select, poll and
//! epoll_wait always fail, `SA_RESTART` or not (signal(7)). A loop that checks a flag set by
//! its handler and then waits can miss a signal that comes between the two; `pselect`,
//! `ppoll` and `epoll_pwait` open the signal mask only for the wait, in the same call. A loop
//! can also make the signal a descriptor it already watches: a handler that writes a byte to
//! a pipe (the self-pipe trick), or a signalfd.
//!
//!   make lesson-19                              the demo: seven scenes, one process
//!   make lesson-19 ARGS="server --port 7000"    an echo server on the self-pipe loop, for nc;
//!                                               Ctrl-C (or kill) stops it cleanly
//!   make lesson-19 ARGS="client --port 7000 hi" sends each word as a line, reads the echoes,
//!                                               then waits for the server's goodbye
//!
//! The demo is one process: the server on its main thread, and a second thread, `outside`,
//! that plays what comes from outside (a `kill`, a client), each at the moment the server is
//! blocked in the call the scene is about (the stage reads /proc/TID/syscall to know).

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::epoll::{EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::SfdFlags;
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType};
use nix::sys::time::{TimeSpec, TimeVal};
use nix::unistd::Pid;
use socklab::lessons::{self, Args, Context, Outcome, Role, stage};
use socklab::sys::{self, Errno, epoll, poll, select};
use socklab::trace;

const DEFAULT_PORT: u16 = 7019;
/// How many finished handshakes may wait for accept.
const BACKLOG: i32 = 5;
/// At most this many bytes per recv.
const RECV_SIZE: usize = 1024;
/// The longest a wait that a signal is meant to interrupt may last: never reached.
const LONG_WAIT: Duration = Duration::from_secs(5);
/// The naive loop's wait in scene 4: it sleeps all of it.
const SHORT_WAIT: Duration = Duration::from_millis(300);
/// The timer of scene 7.
const TIMER: Duration = Duration::from_millis(50);
/// The self-pipe loop waits at most this long at a time.
const TICK: Duration = Duration::from_secs(5);
/// The demo's loop gives up after this many waits (each at most TICK): it never needs 3.
const DEMO_WAITS: usize = 20;
/// A client reads at most this many times while it waits for the server to stop.
const MAX_READS: usize = 10_000;
/// What a client hears before the server closes its connection.
const GOODBYE: &str = "server: stopping, goodbye";

/// How many times `count` has run: the flag a handler sets.
static HANDLED: AtomicUsize = AtomicUsize::new(0);
/// The self-pipe's write end, for `wake`; -1 before there is one.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

/// A handler that only counts: an atomic add is async-signal-safe.
extern "C" fn count(_signal: libc::c_int) {
    HANDLED.fetch_add(1, Ordering::SeqCst);
}

/// The self-pipe's handler: one byte, the signal's number, into the pipe the loop watches.
/// write(2) is async-signal-safe; the pipe is non-blocking, so a full pipe (many signals,
/// nobody reading) loses a byte rather than hanging the handler; errno is put back as found.
extern "C" fn wake(signal: libc::c_int) {
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: __errno_location gives this thread's errno; write reads one byte from a
        // local and writes to a descriptor this program owns (or fails harmlessly).
        unsafe {
            let saved = *libc::__errno_location();
            let byte = signal as u8;
            libc::write(fd, (&raw const byte).cast(), 1);
            *libc::__errno_location() = saved;
        }
    }
}

fn main() {
    lessons::main(DEFAULT_PORT, run);
}

fn run(args: Args) -> Outcome {
    match args.role {
        Role::Demo => demo(),
        Role::Server => {
            trace::set_actor("server");
            let listener = listen_on(args.addr())?;
            let wake_end = self_pipe()?;
            trace::say(format!(
                "listening on {}; try: nc {} {}, then Ctrl-C here (or kill -TERM {})",
                args.addr(),
                args.host,
                args.port,
                std::process::id()
            ));
            let signal = serve_until_signal(&listener, &wake_end, None)?;
            trace::say(format!("{} stopped the server", signal.as_str()));
            sys::close(wake_end).context("close")?;
            sys::close(listener).context("close")?;
            Ok(())
        }
        Role::Client => {
            trace::set_actor("client");
            client(args.addr(), &args.rest)
        }
    }
}

/// socket, bind, listen: a blocking listener (scenes 1 and 2 wait in its accept4).
fn listen_on(addr: SocketAddr) -> Result<OwnedFd, String> {
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let listener =
        sys::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, SockProtocol::Tcp).context("socket")?;
    sys::setsockopt(&listener, nix::sys::socket::sockopt::ReuseAddr, &true).context("setsockopt")?;
    sys::bind(&listener, addr).context(format!("bind {addr}"))?;
    sys::listen(&listener, BACKLOG).context("listen")?;
    Ok(listener)
}

/// `sigaction(signal, {handler, flags})`.
fn install(signal: Signal, handler: extern "C" fn(libc::c_int), flags: SaFlags) -> Result<(), String> {
    let action = SigAction::new(SigHandler::Handler(handler), flags, SigSet::empty());
    // SAFETY: both handlers of this lesson are async-signal-safe: `count` adds to an atomic,
    // `wake` writes one byte to a non-blocking pipe.
    unsafe { sys::sigaction_with(signal, &action) }.context("sigaction")?;
    Ok(())
}

/// The self-pipe: a non-blocking pipe, and `wake` for SIGINT and SIGTERM; returns the read end,
/// which the loop watches with its sockets.
fn self_pipe() -> Result<OwnedFd, String> {
    trace::explain("the self-pipe: a signal's handler will write to 6, the loop watches 5");
    let (read_end, write_end) = sys::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).context("pipe2")?;
    // The handler may run at any moment from now on: the pipe's write end lives as long as
    // the process (it is leaked on purpose), so the handler never writes to a closed number.
    WAKE_FD.store(std::os::fd::IntoRawFd::into_raw_fd(write_end), Ordering::SeqCst);
    trace::explain("Ctrl-C: the handler writes 2, SIGINT's number, into the pipe; SA_RESTART for other calls");
    install(Signal::SIGINT, wake, SaFlags::SA_RESTART)?;
    install(Signal::SIGTERM, wake, SaFlags::SA_RESTART)?;
    Ok(read_end)
}

/// The lesson's loop: select over the listener, the self-pipe and every client; each client's
/// bytes go back to it; a byte in the pipe stops it all: every client is told why, then closed.
/// Returns the signal that stopped it. `most_waits` bounds the demo's loop.
fn serve_until_signal(listener: &OwnedFd, wake_end: &OwnedFd, most_waits: Option<usize>) -> Result<Signal, String> {
    let mut clients: Vec<OwnedFd> = Vec::new();
    let mut buf = [0u8; RECV_SIZE];
    for _ in 0..most_waits.unwrap_or(usize::MAX) {
        let mut readable = select::FdSet::new();
        for fd in [listener, wake_end].into_iter().chain(&clients) {
            readable.insert(fd.as_raw_fd());
        }
        let mut timeout = TimeVal::new(TICK.as_secs() as i64, 0);
        match select::select(Some(&mut readable), None, None, Some(&mut timeout)) {
            Ok(_) => {}
            Err(Errno::EINTR) => {
                trace::say("EINTR: a signal came while select waited; go round: the pipe says which");
                continue;
            }
            Err(error) => return Err(format!("select: {error}")),
        }
        if readable.contains(wake_end.as_raw_fd()) {
            let mut byte = [0u8; 16];
            trace::explain("the handler's byte: the number of the signal that came");
            let n = sys::read(wake_end, &mut byte).context("read")?;
            let signal = Signal::try_from(i32::from(byte[n.saturating_sub(1)])).context("the signal")?;
            for client in clients {
                let line = format!("{GOODBYE} ({})\n", signal.as_str());
                let _ = sys::send(&client, line.as_bytes(), MsgFlags::MSG_NOSIGNAL);
                sys::close(client).context("close")?;
            }
            return Ok(signal);
        }
        if readable.contains(listener.as_raw_fd()) {
            let (client, _) = sys::accept4(listener, SockFlag::SOCK_CLOEXEC).context("accept4")?;
            clients.push(client);
        }
        let mut gone = Vec::new();
        for (at, client) in clients.iter().enumerate() {
            if readable.contains(client.as_raw_fd()) {
                match sys::recv(client, &mut buf, MsgFlags::empty()) {
                    Ok(0) | Err(_) => gone.push(at),
                    Ok(n) => sys::send_all(client, &buf[..n], MsgFlags::MSG_NOSIGNAL).context("send")?,
                }
            }
        }
        for at in gone.into_iter().rev() {
            sys::close(clients.remove(at)).context("close")?;
        }
    }
    Err(format!("no signal came in {} waits", most_waits.unwrap_or(0)))
}

/// A client: each word a line, its echo read; then it waits for the server's goodbye and close.
fn client(server: SocketAddr, words: &[String]) -> Outcome {
    let sock = connect(server)?;
    let mut buf = [0u8; RECV_SIZE];
    for word in words {
        sys::send_all(&sock, format!("{word}\n").as_bytes(), MsgFlags::MSG_NOSIGNAL).context("send")?;
        sys::recv(&sock, &mut buf, MsgFlags::empty()).context("recv")?;
    }
    trace::say("waiting for the server to stop (Ctrl-C it)");
    for _ in 0..MAX_READS {
        if sys::recv(&sock, &mut buf, MsgFlags::empty()).context("recv")? == 0 {
            sys::close(sock).context("close")?;
            return Ok(());
        }
    }
    Err(format!("the server sent {MAX_READS} times without closing").into())
}

fn connect(server: SocketAddr) -> Result<OwnedFd, String> {
    let family = if server.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let sock = sys::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, SockProtocol::Tcp).context("socket")?;
    sys::connect(&sock, server).context(format!("connect {server}"))?;
    Ok(sock)
}

// ---------------------------------------------------------------------------------------------
// The demo.
// ---------------------------------------------------------------------------------------------

fn demo() -> Outcome {
    trace::set_actor("server");
    let listener = listen_on("127.0.0.1:0".parse().expect("a literal address"))?;
    let port = trace::stage(|| socklab::serve::local_addr(&listener))?.port();
    let outside = Outside::start(port)?;
    accept_interrupted(&listener, &outside, true)?;
    accept_interrupted(&listener, &outside, false)?;
    let ep = epoll::epoll_create1(EpollCreateFlags::EPOLL_CLOEXEC).context("epoll_create1")?;
    epoll::epoll_ctl_add(&ep, &listener, EpollEvent::new(EpollFlags::EPOLLIN, 3)).context("epoll_ctl")?;
    waits_are_never_restarted(&listener, &ep, &outside)?;
    the_race_and_the_masks(&listener, &ep)?;
    let wake_end = self_pipe_closes_the_race(&listener)?;
    the_loop(&listener, &wake_end, &outside)?;
    signalfd_in_the_epoll_set(&ep)?;
    outside.stop()?;
    sys::close(wake_end).context("close")?;
    sys::close(ep.0).context("close")?;
    sys::close(listener).context("close")?;
    Ok(())
}

/// Scenes 1 and 2: SIGUSR1 while accept4 waits, its handler installed with SA_RESTART or not.
fn accept_interrupted(listener: &OwnedFd, outside: &Outside, restart: bool) -> Result<(), String> {
    let flags = if restart { SaFlags::SA_RESTART } else { SaFlags::empty() };
    if restart {
        trace::say("1. a handler installed with SA_RESTART; SIGUSR1 comes while accept4 waits");
        trace::explain("the handler only counts; SA_RESTART: a call it interrupts is restarted");
    } else {
        trace::say("2. the same handler without SA_RESTART; SIGUSR1 while accept4 waits");
        trace::explain("no SA_RESTART now: a call the handler interrupts fails with EINTR");
    }
    install(Signal::SIGUSR1, count, flags)?;
    let before = HANDLED.load(Ordering::SeqCst);
    outside.play(move |target| {
        target.kill_when_blocked_in(libc::SYS_accept4, Signal::SIGUSR1)?;
        if restart {
            // The client comes once the handler has run and accept4 is waiting again.
            target.handled_since(before)?;
            target.blocked_in(libc::SYS_accept4)?;
            let sock = connect(SocketAddr::from(([127, 0, 0, 1], target.port)))?;
            sys::close(sock).context("close")?;
        }
        Ok(())
    })?;
    let accepted = sys::accept4(listener, SockFlag::SOCK_CLOEXEC);
    outside.done()?;
    let handled = HANDLED.load(Ordering::SeqCst) - before;
    match accepted {
        Ok((conn, _)) if restart && handled == 1 => {
            trace::say(
                "the handler ran once while accept4 waited, and accept4 never failed: the kernel ran \
                 the handler, then restarted the call (strace -f shows it: = ? ERESTARTSYS, then accept4 again)",
            );
            sys::close(conn).context("close")?;
        }
        Err(Errno::EINTR) if !restart && handled == 1 => {
            trace::say("EINTR: the program must call accept4 again itself (Python does: PEP 475)")
        }
        other => return Err(format!("accept4 after SIGUSR1 ({handled} handled): {other:?}")),
    }
    Ok(())
}

/// Scene 3: select, poll and epoll_wait fail with EINTR even with SA_RESTART.
fn waits_are_never_restarted(listener: &OwnedFd, ep: &nix::sys::epoll::Epoll, outside: &Outside) -> Result<(), String> {
    trace::say("3. SA_RESTART again; SIGUSR1 while select, then poll, then epoll_wait waits");
    install(Signal::SIGUSR1, count, SaFlags::SA_RESTART)?;
    outside.play(|target| {
        for syscall in [libc::SYS_pselect6, libc::SYS_poll, libc::SYS_epoll_wait] {
            target.kill_when_blocked_in(syscall, Signal::SIGUSR1)?;
        }
        Ok(())
    })?;
    let mut readable = select::FdSet::new();
    readable.insert(listener.as_raw_fd());
    let mut timeout = TimeVal::new(LONG_WAIT.as_secs() as i64, 0);
    trace::explain("SA_RESTART or not, a wait is never restarted (signal(7)): EINTR");
    let selected = select::select(Some(&mut readable), None, None, Some(&mut timeout));
    let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    let polled = poll::poll(&mut fds, PollTimeout::try_from(LONG_WAIT).expect("5 s fits"));
    let mut events = [EpollEvent::empty(); 8];
    let waited = epoll::epoll_wait(ep, &mut events, EpollTimeout::try_from(LONG_WAIT).expect("5 s fits"));
    outside.done()?;
    if (selected, polled, waited.map(|n| n as i32)) != (Err(Errno::EINTR), Err(Errno::EINTR), Err(Errno::EINTR)) {
        return Err(format!(
            "select {selected:?}, poll {polled:?}, epoll_wait {waited:?}: not three EINTRs"
        ));
    }
    trace::say("three EINTRs: a loop must handle EINTR from its wait, whatever the handler's flags");
    Ok(())
}

/// Scene 4: the race a flag leaves open, made to happen; then the calls that close it.
fn the_race_and_the_masks(listener: &OwnedFd, ep: &nix::sys::epoll::Epoll) -> Result<(), String> {
    trace::say("4. the race: block SIGUSR1, check the flag, unblock, wait; the signal comes in between");
    let usr1 = SigSet::from(Signal::SIGUSR1);
    let mut open = SigSet::empty();
    let me = Pid::this();
    trace::explain("blocked: from now on SIGUSR1 waits, pending, instead of running the handler");
    sys::sigprocmask(SigmaskHow::SIG_BLOCK, &usr1, Some(&mut open)).context("sigprocmask")?;
    let before = HANDLED.load(Ordering::SeqCst);
    trace::explain("a signal sent now, after the flag was checked and before the wait");
    sys::kill(me, Signal::SIGUSR1).context("kill")?;
    if HANDLED.load(Ordering::SeqCst) != before {
        return Err("the handler ran while SIGUSR1 was blocked".into());
    }
    trace::say("the flag is clear: no signal came, nothing to do, so wait");
    trace::explain("unblocked: the pending SIGUSR1 is delivered here, as this call returns: the handler runs now");
    sys::sigprocmask(SigmaskHow::SIG_UNBLOCK, &usr1, None).context("sigprocmask")?;
    let mut readable = select::FdSet::new();
    readable.insert(listener.as_raw_fd());
    let mut timeout = TimeVal::new(0, SHORT_WAIT.as_micros() as i64);
    trace::explain("the handler has run, the wake-up is spent: select sleeps its whole time");
    let slept = select::select(Some(&mut readable), None, None, Some(&mut timeout));
    if slept != Ok(0) || HANDLED.load(Ordering::SeqCst) != before + 1 {
        return Err(format!(
            "the naive wait: {slept:?}, expected a timeout after the handler ran"
        ));
    }
    trace::say("the handler had run before select began, and select slept anyway: a Ctrl-C missed");

    trace::say("the same order with a mask that opens only for the wait: pselect6, ppoll, epoll_pwait");
    sys::sigprocmask(SigmaskHow::SIG_BLOCK, &usr1, None).context("sigprocmask")?;
    let long = TimeSpec::from_duration(LONG_WAIT);
    sys::kill(me, Signal::SIGUSR1).context("kill")?;
    let mut readable = select::FdSet::new();
    readable.insert(listener.as_raw_fd());
    trace::explain("the mask [] holds only while it waits: the pending SIGUSR1 interrupts it at once");
    let selected = select::pselect(Some(&mut readable), None, None, Some(&long), Some(&open));
    sys::kill(me, Signal::SIGUSR1).context("kill")?;
    let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    let polled = poll::ppoll(&mut fds, Some(&long), Some(&open));
    sys::kill(me, Signal::SIGUSR1).context("kill")?;
    let mut events = [EpollEvent::empty(); 8];
    let timeout = EpollTimeout::try_from(LONG_WAIT).expect("5 s fits");
    trace::explain("failed, so strace 6.1 shows the events and the mask as addresses");
    let waited = epoll::epoll_pwait(ep, &mut events, timeout, Some(&open)).map(|n| n as i32);
    trace::explain("back as it was: nothing blocked");
    sys::sigprocmask(SigmaskHow::SIG_SETMASK, &open, None).context("sigprocmask")?;
    if (selected, polled, waited) != (Err(Errno::EINTR), Err(Errno::EINTR), Err(Errno::EINTR))
        || HANDLED.load(Ordering::SeqCst) != before + 4
    {
        return Err(format!(
            "pselect {selected:?}, ppoll {polled:?}, epoll_pwait {waited:?}"
        ));
    }
    trace::say("no sleep: each wait ran the handler and failed with EINTR at once, the flag then set");
    Ok(())
}

/// Scene 5: the self-pipe: a signal before the wait still wakes it.
fn self_pipe_closes_the_race(listener: &OwnedFd) -> Result<OwnedFd, String> {
    trace::say("5. the self-pipe trick: the handler writes a byte into a pipe the loop watches");
    let wake_end = self_pipe()?;
    trace::explain(
        "the handler runs as kill returns: it writes one byte to 6 (strace shows that write; our trace \
         cannot record a handler's calls: it may use only async-signal-safe ones)",
    );
    sys::kill(Pid::this(), Signal::SIGTERM).context("kill")?;
    let mut readable = select::FdSet::new();
    readable.insert(listener.as_raw_fd());
    readable.insert(wake_end.as_raw_fd());
    let mut timeout = TimeVal::new(LONG_WAIT.as_secs() as i64, 0);
    trace::explain("scene 4's order, no mask, and no sleep: the byte waited in the pipe");
    let ready = select::select(Some(&mut readable), None, None, Some(&mut timeout)).context("select")?;
    let mut byte = [0u8; 16];
    trace::explain("15: SIGTERM's number; a loop would stop here");
    let n = sys::read(&wake_end, &mut byte).context("read")?;
    if ready != 1 || !readable.contains(wake_end.as_raw_fd()) || byte[..n] != [Signal::SIGTERM as u8] {
        return Err(format!("the self-pipe: select gave {ready}, the pipe {:?}", &byte[..n]));
    }
    Ok(wake_end)
}

/// Scene 6: the loop serves a client until SIGTERM comes, then says goodbye and closes.
fn the_loop(listener: &OwnedFd, wake_end: &OwnedFd, outside: &Outside) -> Result<(), String> {
    trace::say("6. the loop: a client is echoed; SIGTERM comes while select waits; goodbye, close");
    outside.play(|target| {
        let sock = connect(SocketAddr::from(([127, 0, 0, 1], target.port)))?;
        sys::send_all(&sock, b"hello\n", MsgFlags::MSG_NOSIGNAL).context("send")?;
        let mut buf = [0u8; RECV_SIZE];
        sys::recv(&sock, &mut buf, MsgFlags::empty()).context("recv")?;
        target.kill_when_blocked_in(libc::SYS_pselect6, Signal::SIGTERM)?;
        let mut heard = Vec::new();
        loop {
            match sys::recv(&sock, &mut buf, MsgFlags::empty()).context("recv")? {
                0 => break,
                n => heard.extend_from_slice(&buf[..n]),
            }
        }
        sys::close(sock).context("close")?;
        match String::from_utf8_lossy(&heard).starts_with(GOODBYE) {
            true => Ok(()),
            false => Err(format!("the client heard {heard:?}, not the goodbye")),
        }
    })?;
    let signal = serve_until_signal(listener, wake_end, Some(DEMO_WAITS))?;
    outside.done()?;
    trace::say(format!(
        "{}: the client was told and closed; the loop is over",
        signal.as_str()
    ));
    Ok(())
}

/// Scene 7: a timer's SIGALRM, blocked, read from a signalfd in the epoll set.
fn signalfd_in_the_epoll_set(ep: &nix::sys::epoll::Epoll) -> Result<(), String> {
    trace::say("7. signalfd: SIGALRM blocked, then read from a descriptor in the epoll set");
    let alarm = SigSet::from(Signal::SIGALRM);
    trace::explain("blocked in every thread (outside blocked it when it began): it can only wait to be read");
    sys::sigprocmask(SigmaskHow::SIG_BLOCK, &alarm, None).context("sigprocmask")?;
    let signals = sys::signalfd(&alarm, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).context("signalfd")?;
    let token = signals.as_raw_fd() as u64;
    epoll::epoll_ctl_add(ep, &signals, EpollEvent::new(EpollFlags::EPOLLIN, token)).context("epoll_ctl")?;
    sys::setitimer(TIMER).context("setitimer")?;
    let mut events = [EpollEvent::empty(); 8];
    trace::explain("the listener and the signalfd in one wait: SIGALRM makes the signalfd readable");
    let ready = epoll::epoll_wait(ep, &mut events, EpollTimeout::try_from(LONG_WAIT).expect("5 s fits"))
        .context("epoll_wait")?;
    let info = sys::read_siginfo(&signals).context("read")?;
    if ready != 1 || events[0].data() != token || info.ssi_signo != Signal::SIGALRM as u32 {
        return Err(format!("signalfd: {ready} ready, signal {}", info.ssi_signo));
    }
    trace::say(format!(
        "ssi_signo={} (SIGALRM), ssi_code={:#x} (SI_KERNEL), ssi_pid={}: the kernel's timer sent it; no handler ran",
        info.ssi_signo, info.ssi_code, info.ssi_pid
    ));
    sys::close(signals).context("close")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The other thread: what comes from outside, at the moment the server waits.
// ---------------------------------------------------------------------------------------------

/// What `outside` knows of the server: its process (to kill), its thread (to watch), its port.
struct Target {
    pid: Pid,
    tid: Pid,
    port: u16,
}

/// How long `outside` waits for the server to get somewhere before it gives up.
const PATIENCE: Duration = Duration::from_secs(10);

impl Target {
    /// Waits until the server thread is asleep in `syscall` (/proc/TID/syscall names it).
    fn blocked_in(&self, syscall: libc::c_long) -> Result<(), String> {
        match stage::wait_until_asleep(&[self.tid], &[syscall], PATIENCE) {
            1 => Ok(()),
            _ => Err(format!("the server never waited in {}", name_of(syscall))),
        }
    }

    /// Sends `signal` to the server's process once its thread waits in `syscall`.
    fn kill_when_blocked_in(&self, syscall: libc::c_long, signal: Signal) -> Result<(), String> {
        self.blocked_in(syscall)?;
        trace::explain(format!("while the server waits in {}", name_of(syscall)));
        sys::kill(self.pid, signal).context("kill")
    }

    /// Waits until the server's handler has run since it counted `before`.
    fn handled_since(&self, before: usize) -> Result<(), String> {
        match stage::wait_until(PATIENCE, || HANDLED.load(Ordering::SeqCst) > before) {
            true => Ok(()),
            false => Err("the handler never ran".into()),
        }
    }
}

/// The kernel's name for the calls the demo interrupts.
fn name_of(syscall: libc::c_long) -> &'static str {
    match syscall {
        libc::SYS_accept4 => "accept4",
        libc::SYS_pselect6 => "pselect6",
        libc::SYS_poll => "poll",
        libc::SYS_epoll_wait => "epoll_wait",
        _ => "a system call",
    }
}

type Part = Box<dyn FnOnce(&Target) -> Result<(), String> + Send>;

/// The `outside` thread: it blocks the demo's signals (a kill aimed at the process must land on
/// the server thread), then plays each scene's part when given it.
struct Outside {
    parts: mpsc::Sender<Part>,
    results: mpsc::Receiver<Result<(), String>>,
    thread: std::thread::JoinHandle<()>,
}

impl Outside {
    fn start(port: u16) -> Result<Outside, String> {
        let target = Target {
            pid: Pid::this(),
            tid: nix::unistd::gettid(),
            port,
        };
        let (parts, inbox) = mpsc::channel::<Part>();
        let (report, results) = mpsc::channel();
        let thread = trace::stage(|| {
            trace::spawn("outside", move || {
                let demo = [Signal::SIGUSR1, Signal::SIGALRM, Signal::SIGTERM]
                    .into_iter()
                    .collect();
                trace::explain(
                    "kill() names the process: the kernel gives the signal to a thread that does not \
                     block it, so the server thread, never this one",
                );
                let blocked = sys::sigprocmask(SigmaskHow::SIG_BLOCK, &demo, None).context("sigprocmask");
                let _ = report.send(blocked);
                for part in inbox {
                    let _ = report.send(part(&target));
                }
            })
        });
        let outside = Outside { parts, results, thread };
        outside.done()?;
        Ok(outside)
    }

    /// Gives the thread its part of the scene, which it plays while the server goes on.
    fn play(&self, part: impl FnOnce(&Target) -> Result<(), String> + Send + 'static) -> Result<(), String> {
        self.parts
            .send(Box::new(part))
            .map_err(|_| "the outside thread is gone".to_string())
    }

    /// Waits for the thread to finish its part.
    fn done(&self) -> Result<(), String> {
        let result = trace::stage(|| self.results.recv_timeout(Duration::from_secs(30)));
        result.map_err(|_| "the outside thread did not finish".to_string())?
    }

    fn stop(self) -> Result<(), String> {
        drop(self.parts);
        trace::stage(|| self.thread.join()).map_err(|_| "the outside thread panicked".to_string())
    }
}
