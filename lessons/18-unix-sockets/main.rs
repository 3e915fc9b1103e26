//! Lesson 18: Unix domain sockets: a listener that hands each connection to a worker process,
//! and datagrams on a name that is not a file.
//!
//! AF_UNIX sockets connect processes on one machine. They are named by a path (bind makes a
//! file there) or by an abstract name (no file); `socketpair` makes two already connected; the
//! kernel tells each end who the other is (`SO_PEERCRED`); and they carry what no network can:
//! open descriptors (`SCM_RIGHTS`). Here a listener accepts connections and sends each one to
//! a worker process, which serves a client it never accepted: lesson 07's prefork pool, where
//! every worker slept in accept, without the herd.
//!
//!   make lesson-18                                        the demo: listener, two workers, two clients, then datagrams
//!   make lesson-18 ARGS=server                            the handing-over server on /tmp/socklab-18.sock, for
//!                                                         `socat - UNIX-CONNECT:/tmp/socklab-18.sock` or `nc -U /tmp/socklab-18.sock`
//!   make lesson-18 ARGS="server /tmp/other.sock"          ... on another path
//!   make lesson-18 ARGS="client /tmp/socklab-18.sock hi"  a client: each word a line, then who the server is
//!
//! The demo works in a private directory that mkdtemp made (`/tmp/socklab-18.XXXXXX`), its
//! current directory, so its socket file has a short relative name, `echo.sock`; the clients are
//! this program again, started from there. The directory is removed at the end.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr, sockopt};
use nix::sys::wait::WaitStatus;
use nix::unistd::{ForkResult, Pid};
use socklab::lessons::{self, Args, Context, Outcome, Role};
use socklab::{sys, trace};

/// Where `server` mode listens unless told otherwise.
const DEFAULT_PATH: &str = "/tmp/socklab-18.sock";
/// The demo's socket file, relative to its private directory.
const SOCKET_FILE: &str = "echo.sock";
/// How many workers the listener starts (Apache's StartServers, as in lesson 07's prefork).
const WORKERS: usize = 2;
/// Connections that may wait for accept (Python's `listen(5)`).
const BACKLOG: i32 = 5;
/// Python's `recv(1024)`.
const RECV_SIZE: usize = 1024;
/// The most messages one conversation may have: every loop here is bounded.
const MAX_MESSAGES: usize = 10_000;
/// The demo's datagrams: three sends, to be read as three receives.
const DATAGRAMS: [&str; 3] = ["one", "two", "three"];
/// The most datagrams the demo sends to fill a queue (the kernel's limit is far lower: 11 here).
const FLOOD_LIMIT: usize = 10_000;

fn main() {
    lessons::main(0, run);
}

fn run(args: Args) -> Outcome {
    match args.role {
        Role::Demo => demo(),
        Role::Server => {
            trace::set_actor("listener");
            let path = args.rest.first().map_or(DEFAULT_PATH, String::as_str);
            serve(Path::new(path))
        }
        Role::Client => {
            if trace::actor() == "main" {
                trace::set_actor("client");
            }
            let Some((path, words)) = args.rest.split_first() else {
                return Err(format!("client needs a path: client {DEFAULT_PATH} hello").into());
            };
            let lines: Vec<String> = if words.is_empty() {
                vec!["hello\n".into()]
            } else {
                words.iter().map(|word| format!("{word}\n")).collect()
            };
            talk(Path::new(path), &lines)?;
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The listener and its workers.
// ---------------------------------------------------------------------------------------------

/// `server` mode: workers first, then the listener on `path`; each connection goes to the next
/// worker in turn, forever (Ctrl-C ends the listener and its workers alike).
fn serve(path: &Path) -> Outcome {
    clear_stale_file(path)?;
    let channels = start_workers()?.0;
    let listener = listen_on(path)?;
    trace::say(format!(
        "listening on {}; try: socat - UNIX-CONNECT:{0} or nc -U {0}",
        path.display()
    ));
    loop {
        for channel in &channels {
            // One client's trouble (a reset, say) ends that conversation, not the server.
            if let Err(error) = hand_over(&listener, channel, None) {
                trace::say(format!("that connection failed: {error}; waiting for the next"));
            }
        }
    }
}

/// A file left at `path` by a server that is gone would make bind fail (EADDRINUSE). Only a
/// connect tells it from a live server's file, which must not be unlinked: that server would
/// go on running, unreachable.
fn clear_stale_file(path: &Path) -> Result<(), String> {
    let probe = sys::socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).context("socket")?;
    trace::explain("is a server listening behind that name? ENOENT: no file; ECONNREFUSED: a stale one");
    match sys::connect(&probe, unix_path(path)?) {
        Ok(()) => return Err(format!("a server is already listening on {}", path.display())),
        Err(sys::Errno::ECONNREFUSED) => {
            trace::explain("the file of a server that is gone: remove it, and bind can make a new one");
            sys::unlink(path).context(format!("unlink {}", path.display()))?;
        }
        // No file (or no way to tell): bind will say what is wrong.
        Err(_) => {}
    }
    sys::close(probe).context("close")?;
    Ok(())
}

/// Forks the workers. Each gets one end of a socketpair of its own, its line to the listener;
/// returns the listener's ends and the workers' pids.
fn start_workers() -> Result<(Vec<OwnedFd>, Vec<Pid>), String> {
    let mut channels: Vec<OwnedFd> = Vec::new();
    let mut workers = Vec::new();
    for number in 1..=WORKERS {
        if number == 1 {
            trace::explain("the line to a worker: two sockets connected to each other, no name, no file");
        }
        let (ours, theirs) =
            sys::socketpair(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC).context("socketpair")?;
        match fork()? {
            ForkResult::Child => lessons::run_child(format!("worker#{number}"), move || {
                trace::explain("the listener's end of this line: only the listener writes on it");
                sys::close(ours).context("close")?;
                for other in channels {
                    trace::explain(
                        "an earlier worker's line, inherited by fork: kept here, that worker would never read end of file",
                    );
                    sys::close(other).context("close")?;
                }
                serve_handed_over(&theirs)?;
                sys::close(theirs).context("close")?;
                Ok(())
            }),
            ForkResult::Parent { child } => {
                trace::explain("the worker's end: the worker has its own copy");
                sys::close(theirs).context("close")?;
                channels.push(ours);
                workers.push(child);
            }
        }
    }
    Ok((channels, workers))
}

/// socket, bind, listen on a path: bind makes the file.
fn listen_on(path: &Path) -> Result<OwnedFd, String> {
    let listener =
        sys::socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).context("socket")?;
    sys::bind(&listener, unix_path(path)?).context(format!("bind {}", path.display()))?;
    sys::listen(&listener, BACKLOG).context("listen")?;
    Ok(listener)
}

/// Accepts one connection, asks the kernel who connected, and sends the descriptor down
/// `channel` to a worker; then closes our copy. `client` is the pid the demo expects.
fn hand_over(listener: &OwnedFd, channel: &OwnedFd, client: Option<u32>) -> Result<(), String> {
    let (conn, _) = sys::accept4(listener, SockFlag::SOCK_CLOEXEC).context("accept4")?;
    let peer = sys::getsockopt(&conn, sockopt::PeerCredentials).context("getsockopt")?;
    let whose = match client {
        Some(pid) if peer.pid() as u32 == pid => ": the client process we started",
        Some(_) => ": not the client we started?",
        None => "",
    };
    trace::say(format!(
        "the kernel says the peer is pid {} uid {} gid {}{whose}",
        peer.pid(),
        peer.uid(),
        peer.gid()
    ));
    trace::say(format!("fd {} is {}", conn.as_raw_fd(), what_is(&conn)));
    trace::explain(format!(
        "the connection goes to a worker: one byte of data, and fd {} in an SCM_RIGHTS control message",
        conn.as_raw_fd()
    ));
    sys::sendmsg(channel, b"x", &[conn.as_fd()], MsgFlags::MSG_NOSIGNAL).context("sendmsg")?;
    sys::close(conn).context("close")?;
    Ok(())
}

/// A worker: wait on the line for a connection, serve it to the end, close it; again, until
/// the listener closes the line.
fn serve_handed_over(channel: &OwnedFd) -> Result<(), String> {
    let mut byte = [0u8; 1];
    for served in 0..usize::MAX {
        if served == 0 {
            trace::explain(
                "sleeps until the listener sends a connection; it arrives as a new descriptor, this process's lowest free one",
            );
        }
        let received = sys::recvmsg(channel, &mut byte, 1, MsgFlags::MSG_CMSG_CLOEXEC).context("recvmsg")?;
        if received.bytes == 0 {
            trace::say("the listener closed our line: no more connections");
            return Ok(());
        }
        let Some(conn) = received.fds.into_iter().next() else {
            return Err("a message without a descriptor (MSG_CTRUNC: no room for it?)".into());
        };
        trace::say(format!(
            "fd {} is {}: the connection the listener accepted",
            conn.as_raw_fd(),
            what_is(&conn)
        ));
        echo(&conn)?;
        trace::explain("the last descriptor of that connection, in a process that never called accept");
        sys::close(conn).context("close")?;
    }
    Ok(())
}

/// Sends back what comes until the client closes.
fn echo(conn: &OwnedFd) -> Result<(), String> {
    let mut buf = [0u8; RECV_SIZE];
    for _ in 0..MAX_MESSAGES {
        let n = sys::recv(conn, &mut buf, MsgFlags::empty()).context("recv")?;
        if n == 0 {
            trace::say("the client closed its end");
            return Ok(());
        }
        sys::send_all(conn, &buf[..n], MsgFlags::MSG_NOSIGNAL).context("send")?;
    }
    Ok(())
}

/// A client: connect to `path`, send each line and read its echo, then ask who the server is.
fn talk(path: &Path, lines: &[String]) -> Result<(), String> {
    let sock = sys::socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).context("socket")?;
    sys::connect(&sock, unix_path(path)?).context(format!("connect {}", path.display()))?;
    let mut buf = [0u8; RECV_SIZE];
    for line in lines {
        sys::send_all(&sock, line.as_bytes(), MsgFlags::MSG_NOSIGNAL).context("send")?;
        let n = sys::recv(&sock, &mut buf, MsgFlags::empty()).context("recv")?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        trace::say(format!("the server echoed {:?}", String::from_utf8_lossy(&buf[..n])));
    }
    trace::explain("seen from the client, SO_PEERCRED names the process that called listen()");
    let server = sys::getsockopt(&sock, sockopt::PeerCredentials).context("getsockopt")?;
    let who = if server.pid() == nix::unistd::getppid().as_raw() {
        "my parent, the listener, not the worker that echoed"
    } else {
        "the process that called listen(), whoever echoed"
    };
    trace::say(format!("the server is pid {}: {who}", server.pid()));
    sys::close(sock).context("close")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The demo.
// ---------------------------------------------------------------------------------------------

fn demo() -> Outcome {
    let (home, dir) = trace::stage(enter_private_dir)?;
    let unique = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let outcome = handover_demo()
        .and_then(|()| file_demo())
        .and_then(|()| datagram_demo(&unique));
    trace::stage(|| leave_private_dir(&home, &dir));
    outcome
}

/// Part 1: two workers, two clients; each connection is accepted by the listener and served by
/// a worker.
fn handover_demo() -> Outcome {
    trace::set_actor("listener");
    trace::say(format!(
        "1. a listener on {SOCKET_FILE} hands each connection to one of {WORKERS} worker processes"
    ));
    let (channels, workers) = start_workers()?;
    let listener = listen_on(Path::new(SOCKET_FILE))?;
    let kind = trace::stage(|| std::fs::symlink_metadata(SOCKET_FILE).map(|m| m.file_type()));
    if kind.is_ok_and(|k| std::os::unix::fs::FileTypeExt::is_socket(&k)) {
        trace::say(format!(
            "{SOCKET_FILE} is in the directory now: a file of type socket (ls -l: srwx...)"
        ));
    }
    for (number, channel) in channels.iter().enumerate() {
        let name = format!("client#{}", number + 1);
        let words = [SOCKET_FILE, if number == 0 { "hello" } else { "bye" }];
        let client = lessons::spawn_process(&name, "client", 0, &words).context(&name)?;
        hand_over(&listener, channel, Some(client.id()))?;
        wait_process(&name, client)?;
    }
    for channel in channels {
        trace::explain("the last descriptor of a worker's line (the worker closed its copy): its recvmsg returns 0");
        sys::close(channel).context("close")?;
    }
    for worker in workers {
        reap(worker)?;
    }
    sys::close(listener).context("close")?;
    Ok(())
}

/// Part 2: the file outlives its socket; bind will not reuse it until it is unlinked.
fn file_demo() -> Outcome {
    trace::say("2. a socket's file outlives it");
    if trace::stage(|| Path::new(SOCKET_FILE).exists()) {
        trace::say(format!(
            "{SOCKET_FILE} is still in the directory: closing the socket did not remove its file"
        ));
    }
    let sock = sys::socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).context("socket")?;
    let name = unix_path(Path::new(SOCKET_FILE))?;
    match sys::connect(&sock, name) {
        Err(sys::Errno::ECONNREFUSED) => {}
        other => return Err(format!("connect to a file nobody listens behind: {other:?}, not ECONNREFUSED").into()),
    }
    match sys::bind(&sock, name) {
        Err(sys::Errno::EADDRINUSE) => {}
        other => return Err(format!("bind over an existing file: {other:?}, not EADDRINUSE").into()),
    }
    sys::unlink(SOCKET_FILE).context("unlink")?;
    trace::explain("the name is free again: bind makes a new file");
    sys::bind(&sock, name).context("bind")?;
    sys::close(sock).context("close")?;
    trace::explain("what a server does as it stops: remove the file its bind made");
    sys::unlink(SOCKET_FILE).context("unlink")?;
    Ok(())
}

/// Part 3: datagrams to an abstract name: no file; each datagram whole and in order; a full
/// queue refuses more rather than dropping any; the name goes with its last socket.
fn datagram_demo(unique: &str) -> Outcome {
    trace::set_actor("receiver");
    trace::say("3. datagrams on an abstract name: no file, each datagram whole, none dropped");
    let receiver =
        sys::socket(AddressFamily::Unix, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None).context("socket")?;
    let name = UnixAddr::new_abstract(unique.as_bytes()).context("an abstract name")?;
    sys::bind(&receiver, name).context("bind")?;
    let files = trace::stage(|| std::fs::read_dir(".").map(Iterator::count).unwrap_or(0));
    if files == 0 {
        trace::say("no file in the directory: the name lives in the kernel only (ss -xl lists it, with its @)");
    }

    trace::set_actor("sender");
    let sender =
        sys::socket(AddressFamily::Unix, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None).context("socket")?;
    for word in DATAGRAMS {
        sys::sendto(&sender, word.as_bytes(), name, MsgFlags::empty()).context("sendto")?;
    }
    trace::set_actor("receiver");
    let mut buf = [0u8; 64];
    for _ in DATAGRAMS {
        sys::recv(&receiver, &mut buf, MsgFlags::empty()).context("recv")?;
    }
    trace::say("three sends, three receives: each datagram whole and in order, as UDP keeps them");

    trace::set_actor("sender");
    let mut queued = 0;
    for at in 0..FLOOD_LIMIT {
        if at == 0 {
            trace::explain("MSG_DONTWAIT: if this call would have to wait, it fails with EAGAIN instead");
        }
        match sys::sendto(&sender, b"x", name, MsgFlags::MSG_DONTWAIT) {
            Ok(_) => queued += 1,
            Err(sys::Errno::EAGAIN) => break,
            Err(error) => return Err(format!("sendto: {error}").into()),
        }
    }
    let limit = trace::stage(|| std::fs::read_to_string("/proc/sys/net/unix/max_dgram_qlen"));
    trace::measured(format!(
        "{queued} datagrams wait unread, net.unix.max_dgram_qlen is {}: then the queue is full. A \
         blocking sender would sleep here; UDP would have dropped them",
        limit.unwrap_or_default().trim()
    ));

    trace::set_actor("receiver");
    sys::close(receiver).context("close")?;
    trace::set_actor("sender");
    match sys::sendto(&sender, b"x", name, MsgFlags::MSG_DONTWAIT) {
        Err(sys::Errno::ECONNREFUSED) => {}
        other => return Err(format!("sendto after the receiver closed: {other:?}, not ECONNREFUSED").into()),
    }
    sys::close(sender).context("close")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Small pieces: names, processes, and what /proc says a descriptor is.
// ---------------------------------------------------------------------------------------------

fn unix_path(path: &Path) -> Result<UnixAddr, String> {
    UnixAddr::new(path).context(format!("the path {}", path.display()))
}

/// `socket:[48213]`: what /proc/self/fd says the descriptor refers to. The number is the
/// socket's inode, the same in every process that holds it, whatever the descriptor's number.
/// Reading /proc is the demo looking on, not part of the server.
fn what_is(fd: &OwnedFd) -> String {
    let link = trace::stage(|| std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())));
    link.map_or_else(|e| format!("unknown ({e})"), |l| l.display().to_string())
}

/// mkdtemp a private directory `socklab-18.XXXXXX` and make it the current one; returns the
/// directory we were in and the new one.
fn enter_private_dir() -> Result<(PathBuf, PathBuf), String> {
    let home = std::env::current_dir().context("the current directory")?;
    let template = std::env::temp_dir().join("socklab-18.XXXXXX");
    let mut template = std::ffi::CString::new(template.into_os_string().into_encoded_bytes())
        .context("the temporary directory's name")?
        .into_bytes_with_nul();
    // SAFETY: template is a writable, NUL-terminated buffer ending in XXXXXX, as mkdtemp(3)
    // requires; it replaces those six characters in place.
    if unsafe { libc::mkdtemp(template.as_mut_ptr().cast()) }.is_null() {
        return Err(format!("mkdtemp: {}", std::io::Error::last_os_error()));
    }
    template.pop();
    let dir = PathBuf::from(std::ffi::OsString::from_vec(template));
    std::env::set_current_dir(&dir).context("chdir")?;
    Ok((home, dir))
}

fn leave_private_dir(home: &Path, dir: &Path) {
    let _ = std::env::set_current_dir(home);
    let _ = std::fs::remove_dir_all(dir);
}

/// fork(), from the process's only thread of the lesson.
fn fork() -> Result<ForkResult, String> {
    // SAFETY: the listener forks its workers before it starts anything else: its only other
    // thread is the trace's printer (in server mode), which holds no lock the child needs:
    // sys::fork gives the child a trace state of its own, and glibc makes malloc safe in a
    // forked child.
    unsafe { sys::fork() }.context("fork")
}

/// waitpid for one child, which must have exited with status 0.
fn reap(child: Pid) -> Result<(), String> {
    match sys::waitpid(child).context("waitpid")? {
        WaitStatus::Exited(_, 0) => Ok(()),
        other => Err(format!("a worker ended badly: {other:?}")),
    }
}

/// Waits for a client process started with `spawn_process`.
fn wait_process(name: &str, mut child: std::process::Child) -> Result<(), String> {
    let status = trace::stage(|| child.wait()).context(name)?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{name} ended with {status}"))
    }
}
