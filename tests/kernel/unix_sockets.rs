//! What lesson 18 claims about AF_UNIX sockets, made to happen with real peers:
//! - a descriptor sent with SCM_RIGHTS is the same socket (the same inode) in a process that
//!   never held the listener, which serves the client after the sender closed its copy; the
//!   lesson's own server does it for socat, `nc -U` and Python, its workers never accepting;
//! - SO_PEERCRED gives the peer's real pid, uid and gid (socat run as nobody shows 65534), as
//!   the kernel recorded them at connect (that process may be gone); from a client's side it
//!   names the process that called listen, not the one that accepted;
//! - bind makes a file that close leaves behind (Python's UnixStreamServer too): connect to it
//!   is refused and a second bind fails with EADDRINUSE until unlink; unlink hides a live
//!   server from newcomers only; and the file's permissions decide who may connect;
//! - an abstract name makes no file, is held while a socket has it, and is free the moment
//!   its socket closes;
//! - datagrams keep their boundaries and none is dropped: a full queue puts the sender to sleep;
//! - closing a listener resets clients it had not accepted; a datagram sender whose peer
//!   closed gets ECONNREFUSED;
//! - descriptors that arrive are close-on-exec only with MSG_CMSG_CLOEXEC (Python's recv_fds
//!   passes no flag: inheritable); a control buffer too small loses them (MSG_CTRUNC).
//!
//! Cost: about 1.3 s here (2 test threads), most of it starting Python (seven times), socat
//! and the lesson's server.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use crate::util;
use nix::errno::Errno;
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr, sockopt};
use socklab::sys;
use socklab::trace::{self, Mode};

/// A bound on every wait: each step takes milliseconds (a hang guard, not a timing claim).
const PATIENCE: Duration = Duration::from_secs(10);
/// nobody's uid and gid on Debian.
const NOBODY: u32 = 65534;

// ---------------------------------------------------------------------------------------------
// Helpers: a private directory, peers that print lines, sockets made with socklab::sys.
// ---------------------------------------------------------------------------------------------

/// A directory of this test's own for socket files, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        trace::set_mode(Mode::Off);
        let dir = std::env::temp_dir().join(format!("socklab-test-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).expect("creating a scratch directory");
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An abstract name no other run or test uses.
fn abstract_name(test: &str) -> String {
    format!("socklab-test-{}-{test}", std::process::id())
}

/// A program this test started, whose stdout lines arrive on a channel; killed (by its PID)
/// and reaped when dropped.
struct Peer {
    child: Child,
    lines: Receiver<String>,
}

impl Peer {
    fn start(mut command: Command) -> Peer {
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command.spawn().expect("starting a peer");
        let stdout = child.stdout.take().expect("its stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        Peer { child, lines }
    }

    /// The next line it prints (within [`PATIENCE`]).
    fn line(&self) -> String {
        self.lines
            .recv_timeout(PATIENCE)
            .expect("the peer printed nothing in time")
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Closes its stdin and waits (within [`PATIENCE`]) for it to end well.
    fn finish(mut self) {
        drop(self.child.stdin.take());
        let started = Instant::now();
        while started.elapsed() < PATIENCE {
            if let Some(status) = self.child.try_wait().expect("waiting for a peer") {
                assert!(status.success(), "the peer ended with {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("the peer did not end in time");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// python3 running `program`, with `fd` as its descriptor 3 (and only there: ours stays
/// close-on-exec, so no other process this test binary starts inherits it).
fn python_with_fd3(program: &str, fd: &OwnedFd) -> Command {
    util::require("python3");
    let number = fd.as_raw_fd();
    let mut command = Command::new("python3");
    command.args(["-u", "-c", program]);
    // SAFETY: between fork and exec the closure makes only async-signal-safe calls (dup2,
    // fcntl) on descriptor numbers, touching no memory of the parent's.
    unsafe {
        command.pre_exec(move || {
            let done = if number == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(number, 3)
            };
            if done < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    command
}

fn python(program: &str) -> Command {
    util::require("python3");
    let mut command = Command::new("python3");
    command.args(["-u", "-c", program]);
    command
}

/// Runs `command` with `input` on its stdin, to the end (killed after [`PATIENCE`]).
fn run_with_input(mut command: Command, input: &[u8]) -> Output {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("starting a peer");
    child
        .stdin
        .take()
        .expect("its stdin")
        .write_all(input)
        .expect("writing its input");
    util::wait_with_deadline(child, PATIENCE)
}

fn unix_stream() -> OwnedFd {
    sys::socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).expect("socket")
}

fn unix_datagram() -> OwnedFd {
    sys::socket(AddressFamily::Unix, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None).expect("socket")
}

fn name_of(path: &Path) -> UnixAddr {
    UnixAddr::new(path).expect("a socket path")
}

/// socket, bind, listen on `path`.
fn unix_listener(path: &Path) -> OwnedFd {
    let listener = unix_stream();
    sys::bind(&listener, name_of(path)).expect("bind");
    sys::listen(&listener, 5).expect("listen");
    listener
}

/// The inode of the open file behind a descriptor: the same in every process that holds it.
fn inode(fd: impl AsFd) -> u64 {
    nix::sys::stat::fstat(fd).expect("fstat").st_ino
}

/// What /proc says each of `pid`'s descriptors refers to (`socket:[48213]`, `pipe:[…]`, paths).
fn descriptors_of(pid: i32) -> BTreeSet<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries
                .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .map(|link| link.display().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits (within [`PATIENCE`]) until `ready` holds; whether it did.
fn wait_until(mut ready: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < PATIENCE {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

/// The syscall `pid` sleeps in, by number (`/proc/PID/syscall`), or None while it runs.
fn sleeping_in(pid: i32) -> Option<i64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/syscall")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// SCM_RIGHTS: the descriptor crosses.
// ---------------------------------------------------------------------------------------------

/// The worker: receives one descriptor on fd 3, says what it is and everything it holds,
/// then echoes on it until end of file.
const WORKER: &str = r#"
import os, socket
line = socket.socket(fileno=3)
data, fds, flags, addr = socket.recv_fds(line, 1, 1)
fd = fds[0]
print(fd, os.fstat(fd).st_ino)
held = []
for n in os.listdir("/proc/self/fd"):
    try:
        held.append(os.readlink(f"/proc/self/fd/{n}"))
    except OSError:
        pass
print(" ".join(held))
with socket.socket(fileno=fd) as conn:
    while chunk := conn.recv(1024):
        conn.sendall(chunk)
print("served")
"#;

#[test]
fn a_passed_descriptor_is_the_same_socket_in_a_process_that_never_accepted() {
    let scratch = Scratch::new("crosses");
    let path = scratch.path("echo.sock");
    let listener = unix_listener(&path);
    let (ours, theirs) =
        sys::socketpair(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC).expect("socketpair");
    let worker = Peer::start(python_with_fd3(WORKER, &theirs));
    drop(theirs);

    let mut client = UnixStream::connect(&path).expect("connect");
    client.set_read_timeout(Some(PATIENCE)).expect("SO_RCVTIMEO");
    let (conn, _) = sys::accept4(&listener, SockFlag::SOCK_CLOEXEC).expect("accept4");
    let accepted = inode(&conn);
    sys::sendmsg(&ours, b"x", &[conn.as_fd()], MsgFlags::MSG_NOSIGNAL).expect("sendmsg");
    sys::close(conn).expect("close");
    assert!(
        !descriptors_of(std::process::id() as i32).contains(&format!("socket:[{accepted}]")),
        "this process no longer holds the connection"
    );

    let report = worker.line();
    let (number, worker_inode) = report.split_once(' ').expect("`fd inode`");
    assert_eq!(
        worker_inode.parse::<u64>().expect("an inode"),
        accepted,
        "the worker's fd {number} is the socket we accepted"
    );
    let held = worker.line();
    assert!(held.contains(&format!("socket:[{accepted}]")), "{held}");
    assert!(
        !held.contains(&format!("socket:[{}]", inode(&listener))),
        "the worker never held the listener, so it cannot have accepted: {held}"
    );

    // Only the worker holds the connection now: it is the one that answers.
    client.write_all(b"ping\n").expect("write");
    let mut echo = [0u8; 5];
    client.read_exact(&mut echo).expect("the echo");
    assert_eq!(&echo, b"ping\n");
    drop(client);
    assert_eq!(worker.line(), "served");
    worker.finish();
}

/// `{"pid":…, "syscall":"…", "line":"…"}` from the lesson's JSON trace.
struct Record {
    pid: i32,
    syscall: String,
    line: String,
}

/// A field of one JSON record: a number as written, a string unescaped.
fn json_field(record: &str, name: &str) -> Option<String> {
    let at = record.find(&format!("\"{name}\":"))? + name.len() + 3;
    let rest = &record[at..];
    let Some(text) = rest.strip_prefix('"') else {
        return rest.split([',', '}']).next().map(String::from);
    };
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

fn record(line: &str) -> Option<Record> {
    Some(Record {
        pid: json_field(line, "pid")?.parse().ok()?,
        syscall: json_field(line, "syscall")?,
        line: json_field(line, "line")?,
    })
}

#[test]
fn the_lessons_server_hands_socat_nc_and_python_to_workers_that_never_accept() {
    for program in ["socat", "nc", "python3"] {
        util::require(program);
    }
    let scratch = Scratch::new("lesson");
    let path = scratch.path("lesson.sock");
    let mut command = Command::new(util::lesson_program(18));
    command.arg("server").arg(&path).env("SOCKLAB_TRACE", "json");
    let server = Peer::start(command);
    assert!(
        wait_until(|| UnixStream::connect(&path).is_ok()),
        "the lesson's server did not listen on {}",
        path.display()
    );

    let socat = run_with_input(
        {
            let mut c = Command::new("socat");
            c.arg("-").arg(format!("UNIX-CONNECT:{}", path.display()));
            c
        },
        b"from socat\n",
    );
    let nc = run_with_input(
        {
            let mut c = Command::new("nc");
            c.args(["-N", "-U"]).arg(&path);
            c
        },
        b"from nc\n",
    );
    let python = run_with_input(
        python(&format!(
            "import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect({:?})\ns.sendall(b'from python\\n')\nprint(s.recv(100).decode(), end='')",
            path.display().to_string()
        )),
        b"",
    );
    for (who, output, payload) in [
        ("socat", &socat, "from socat\n"),
        ("nc", &nc, "from nc\n"),
        ("python", &python, "from python\n"),
    ] {
        assert_eq!(String::from_utf8_lossy(&output.stdout), payload, "{who} got its echo");
    }

    // Each payload was read by a process that received a descriptor and never called accept4.
    let payloads = ["from socat\\n", "from nc\\n", "from python\\n"];
    let mut records: Vec<Record> = Vec::new();
    let seen_all = wait_until(|| {
        while let Ok(line) = server.lines.try_recv() {
            records.extend(record(&line));
        }
        payloads.iter().all(|p| {
            records
                .iter()
                .any(|r| r.syscall == "recvfrom" && r.line.contains(&format!("\"{p}\"")))
        })
    });
    assert!(seen_all, "the trace never showed the three payloads being read");
    let mut calls: BTreeMap<i32, Vec<&str>> = BTreeMap::new();
    for r in &records {
        calls.entry(r.pid).or_default().push(&r.syscall);
    }
    let listener: Vec<i32> = calls
        .iter()
        .filter(|(_, c)| c.contains(&"accept4"))
        .map(|(pid, _)| *pid)
        .collect();
    assert_eq!(listener, vec![server.pid()], "only the listener accepts");
    assert_eq!(
        calls[&server.pid()].iter().filter(|c| **c == "sendmsg").count(),
        4,
        "it sends each connection on: the readiness probe's and the three peers'"
    );
    for payload in payloads {
        let reader = records
            .iter()
            .find(|r| r.syscall == "recvfrom" && r.line.contains(&format!("\"{payload}\"")))
            .expect("the read")
            .pid;
        assert_ne!(reader, server.pid(), "{payload}: read by a worker, not the listener");
        assert!(
            records
                .iter()
                .any(|r| r.pid == reader && r.syscall == "recvmsg" && r.line.contains("SCM_RIGHTS")),
            "{payload}: its reader received a descriptor with SCM_RIGHTS"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// SO_PEERCRED: who is at the other end.
// ---------------------------------------------------------------------------------------------

#[test]
fn so_peercred_is_the_connecting_process_and_its_user() {
    util::require("socat");
    let scratch = Scratch::new("peercred");
    let path = scratch.path("creds.sock");
    let listener = unix_listener(&path);
    // SAFETY: geteuid, getuid and getgid cannot fail and touch no memory.
    let (euid, our_uid, our_gid) = unsafe { (libc::geteuid(), libc::getuid(), libc::getgid()) };
    let root = euid == 0;
    let (uid, gid) = if root { (NOBODY, NOBODY) } else { (our_uid, our_gid) };
    let socat = |path: &Path| {
        let mut command = Command::new("socat");
        command.arg("STDIN").arg(format!("UNIX-CONNECT:{}", path.display()));
        command.uid(uid).gid(gid);
        command
    };
    if root {
        // The socket file's permissions decide who may connect: bind made it 0755 here (umask
        // 022), and connect needs write permission on it.
        std::fs::set_permissions(&scratch.0, std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
        let refused = run_with_input(socat(&path), b"");
        assert!(
            !refused.status.success(),
            "nobody may not connect to a 0755 socket file"
        );
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains("Permission denied"),
            "{}",
            String::from_utf8_lossy(&refused.stderr)
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).expect("chmod socket");
    }
    let peer = Peer::start(socat(&path));
    let (conn, _) = sys::accept4(&listener, SockFlag::SOCK_CLOEXEC).expect("accept4");
    let creds = sys::getsockopt(&conn, sockopt::PeerCredentials).expect("SO_PEERCRED");
    assert_eq!(creds.pid(), peer.pid(), "the pid of the process that connected");
    assert_eq!((creds.uid(), creds.gid()), (uid, gid), "its uid and gid, not ours");
    peer.finish();
}

/// A: connects, forks B (which keeps the socket), prints both pids and exits.
const CONNECT_THEN_LEAVE: &str = r#"
import os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
child = os.fork()
if child == 0:
    sys.stdin.read()
    os._exit(0)
print(os.getpid(), child)
os._exit(0)
"#;

#[test]
fn so_peercred_is_recorded_at_connect_even_after_that_process_is_gone() {
    let scratch = Scratch::new("recorded");
    let path = scratch.path("creds.sock");
    let listener = unix_listener(&path);
    let mut command = python(CONNECT_THEN_LEAVE);
    command.arg(&path);
    let connecter = Peer::start(command);
    let pids = connecter.line();
    let (a, b) = pids.split_once(' ').expect("two pids");
    let (a, b): (i32, i32) = (a.parse().expect("a pid"), b.parse().expect("a pid"));
    let holder = KillOnDrop(b);
    assert!(
        wait_until(|| !Path::new(&format!("/proc/{a}")).exists() || is_zombie(a)),
        "the connecting process did not exit"
    );
    let (conn, _) = sys::accept4(&listener, SockFlag::SOCK_CLOEXEC).expect("accept4");
    let creds = sys::getsockopt(&conn, sockopt::PeerCredentials).expect("SO_PEERCRED");
    assert_eq!(creds.pid(), a, "the process that called connect, which has exited");
    assert_ne!(creds.pid(), b, "not the process that holds the socket now");
    drop(holder);
    connecter.finish();
}

/// Kills `pid` (a grandchild this test caused) when dropped.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0), nix::sys::signal::Signal::SIGKILL);
    }
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

/// Listens, prints its pid, forks a child that prints its own and accepts one connection.
const LISTEN_THEN_FORK_ACCEPTER: &str = r#"
import os, socket, sys
l = socket.socket(socket.AF_UNIX)
l.bind(sys.argv[1])
l.listen(5)
print(os.getpid())
child = os.fork()
if child == 0:
    print(os.getpid())
    conn, _ = l.accept()
    conn.recv(1)
    os._exit(0)
os.waitpid(child, 0)
"#;

#[test]
fn seen_from_a_client_so_peercred_is_the_process_that_called_listen() {
    let scratch = Scratch::new("listener-creds");
    let path = scratch.path("creds.sock");
    let mut command = python(LISTEN_THEN_FORK_ACCEPTER);
    command.arg(&path);
    let server = Peer::start(command);
    let listening: i32 = server.line().parse().expect("a pid");
    let accepting: i32 = server.line().parse().expect("a pid");
    let sock = unix_stream();
    sys::connect(&sock, name_of(&path)).expect("connect");
    let creds = sys::getsockopt(&sock, sockopt::PeerCredentials).expect("SO_PEERCRED");
    assert_eq!(creds.pid(), listening, "the process that called listen");
    assert_ne!(creds.pid(), accepting, "not its child, which accepts");
    sys::send(&sock, b"x", MsgFlags::MSG_NOSIGNAL).expect("send");
    server.finish();
}

// ---------------------------------------------------------------------------------------------
// Names: a file that outlives its socket; an abstract name that does not.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_socket_file_outlives_its_socket_and_bind_waits_for_unlink() {
    let scratch = Scratch::new("file");
    let path = scratch.path("echo.sock");
    let first = unix_listener(&path);
    let kind = std::fs::symlink_metadata(&path).expect("bind made a file").file_type();
    assert!(kind.is_socket(), "a file of type socket");
    sys::close(first).expect("close");
    assert!(path.exists(), "close left the file");

    let second = unix_stream();
    assert_eq!(
        sys::connect(&second, name_of(&path)),
        Err(Errno::ECONNREFUSED),
        "nobody listens behind it"
    );
    assert_eq!(
        sys::bind(&second, name_of(&path)),
        Err(Errno::EADDRINUSE),
        "bind will not reuse the file"
    );
    sys::unlink(&path).expect("unlink");
    sys::bind(&second, name_of(&path)).expect("bind after unlink");
    sys::listen(&second, 5).expect("listen");

    // unlink hides a live server from newcomers; those already connected carry on.
    let early = UnixStream::connect(&path).expect("connect");
    sys::unlink(&path).expect("unlink");
    let late = unix_stream();
    assert_eq!(
        sys::connect(&late, name_of(&path)),
        Err(Errno::ENOENT),
        "no file, no way in"
    );
    let (conn, _) = sys::accept4(&second, SockFlag::SOCK_CLOEXEC).expect("the early client");
    (&early).write_all(b"still here").expect("write");
    let mut buf = [0u8; 16];
    let n = sys::recv(&conn, &mut buf, MsgFlags::empty()).expect("recv");
    assert_eq!(&buf[..n], b"still here");
}

/// Python's socketserver: server_close closes the socket and leaves the file.
const UNIX_STREAM_SERVER: &str = r#"
import errno, os, socketserver, sys
class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        pass
server = socketserver.UnixStreamServer(sys.argv[1], Handler)
server.server_close()
print(os.path.exists(sys.argv[1]))
try:
    socketserver.UnixStreamServer(sys.argv[1], Handler)
except OSError as error:
    print(errno.errorcode[error.errno])
"#;

#[test]
fn pythons_unix_stream_server_leaves_its_file_and_cannot_restart() {
    let scratch = Scratch::new("socketserver");
    let mut command = python(UNIX_STREAM_SERVER);
    command.arg(scratch.path("server.sock"));
    let server = Peer::start(command);
    assert_eq!(server.line(), "True", "the file is still there after server_close()");
    assert_eq!(server.line(), "EADDRINUSE", "so the same server cannot start again");
    server.finish();
}

/// The names /proc/net/unix lists (an abstract one with a leading `@`).
fn bound_names() -> String {
    std::fs::read_to_string("/proc/net/unix").expect("/proc/net/unix")
}

#[test]
fn an_abstract_name_makes_no_file_and_goes_with_its_socket() {
    util::require("socat");
    let scratch = Scratch::new("abstract");
    let name = abstract_name("abstract");
    let address = UnixAddr::new_abstract(name.as_bytes()).expect("an abstract name");
    let receiver = unix_datagram();
    sys::bind(&receiver, address).expect("bind");
    assert!(bound_names().contains(&format!("@{name}")), "the kernel lists it");
    assert_eq!(
        std::fs::read_dir(&scratch.0).expect("the scratch dir").count(),
        0,
        "no file anywhere near"
    );
    assert!(!Path::new(&name).exists() && !Path::new(&format!("/{name}")).exists());
    let rival = unix_datagram();
    assert_eq!(
        sys::bind(&rival, address),
        Err(Errno::EADDRINUSE),
        "held while its socket lives"
    );

    let sent = run_with_input(
        {
            let mut c = Command::new("socat");
            c.args(["-u", "-"]).arg(format!("ABSTRACT-SENDTO:{name}"));
            c
        },
        b"from socat",
    );
    assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
    let mut buf = [0u8; 64];
    let n = sys::recv(&receiver, &mut buf, MsgFlags::empty()).expect("recv");
    assert_eq!(&buf[..n], b"from socat", "socat found it by name");

    sys::close(receiver).expect("close");
    assert!(!bound_names().contains(&format!("@{name}")), "gone with its socket");
    sys::bind(&rival, address).expect("free at once: nothing to unlink");
}

// ---------------------------------------------------------------------------------------------
// Datagrams: whole, in order, never dropped.
// ---------------------------------------------------------------------------------------------

/// Sends datagram i (i+1 bytes, each i) for i in 0..50 to the abstract name argv[1], blocking.
const SENDER: &str = r#"
import os, socket, sys
print(os.getpid())
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
for i in range(50):
    s.sendto(bytes([i]) * (i + 1), "\0" + sys.argv[1])
print("sent")
"#;

#[test]
fn datagrams_keep_their_boundaries_and_a_full_queue_puts_the_sender_to_sleep() {
    let _scratch = Scratch::new("datagrams");
    let name = abstract_name("datagrams");
    let receiver = unix_datagram();
    sys::bind(&receiver, UnixAddr::new_abstract(name.as_bytes()).expect("a name")).expect("bind");
    let mut command = python(SENDER);
    command.arg(&name);
    let sender = Peer::start(command);
    let pid: i32 = sender.line().parse().expect("its pid");
    // Nobody reads yet: after max_dgram_qlen + 1 datagrams the sender must wait, not drop.
    assert!(
        wait_until(|| sleeping_in(pid) == Some(libc::SYS_sendto)),
        "the sender should be asleep in sendto while the queue is full"
    );
    let mut buf = [0u8; 128];
    for i in 0..50u8 {
        let n = sys::recv(&receiver, &mut buf, MsgFlags::empty()).expect("recv");
        assert_eq!(n, usize::from(i) + 1, "datagram {i} whole, not merged or split");
        assert!(buf[..n].iter().all(|&b| b == i), "datagram {i} in its place");
    }
    assert_eq!(sender.line(), "sent");
    sender.finish();
}

// ---------------------------------------------------------------------------------------------
// What close does on AF_UNIX (the notes' close.unix-listener and close.unix-dgram).
// ---------------------------------------------------------------------------------------------

#[test]
fn closing_a_unix_listener_resets_the_clients_it_had_not_accepted() {
    let scratch = Scratch::new("listener-close");
    let path = scratch.path("echo.sock");
    let listener = unix_listener(&path);
    let mut waiting = UnixStream::connect(&path).expect("connect: queued, not accepted");
    waiting.set_read_timeout(Some(PATIENCE)).expect("SO_RCVTIMEO");
    waiting.write_all(b"hello?").expect("write");
    sys::close(listener).expect("close");
    let mut buf = [0u8; 8];
    let error = waiting.read(&mut buf).expect_err("not end of file");
    assert_eq!(error.kind(), ErrorKind::ConnectionReset);
    assert!(path.exists(), "and the file stays");
}

#[test]
fn a_datagram_sender_whose_peer_closed_gets_econnrefused() {
    let _scratch = Scratch::new("dgram-close");
    let name = UnixAddr::new_abstract(abstract_name("dgram-close").as_bytes()).expect("a name");
    let receiver = unix_datagram();
    sys::bind(&receiver, name).expect("bind");
    let sender = unix_datagram();
    sys::connect(&sender, name).expect("connect");
    sys::send(&sender, b"1", MsgFlags::empty()).expect("send");
    sys::close(receiver).expect("close");
    assert_eq!(sys::send(&sender, b"2", MsgFlags::empty()), Err(Errno::ECONNREFUSED));
}

// ---------------------------------------------------------------------------------------------
// What arrives: close-on-exec or not; lost when there is no room.
// ---------------------------------------------------------------------------------------------

fn close_on_exec(fd: &OwnedFd) -> bool {
    let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).expect("F_GETFD");
    flags & libc::FD_CLOEXEC != 0
}

#[test]
fn received_descriptors_are_close_on_exec_only_when_asked() {
    let _scratch = Scratch::new("cloexec");
    let (a, b) = sys::socketpair(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC).expect("socketpair");
    let passed = unix_stream();
    let mut byte = [0u8; 1];
    for (flags, wanted) in [(MsgFlags::MSG_CMSG_CLOEXEC, true), (MsgFlags::empty(), false)] {
        sys::sendmsg(&a, b"x", &[passed.as_fd()], MsgFlags::MSG_NOSIGNAL).expect("sendmsg");
        let got = sys::recvmsg(&b, &mut byte, 1, flags).expect("recvmsg");
        assert_eq!(got.fds.len(), 1);
        assert_eq!(close_on_exec(&got.fds[0]), wanted, "with {flags:?}");
        assert_eq!(inode(&got.fds[0]), inode(&passed));
    }

    // Python's recv_fds passes no flags: what arrives would survive an exec.
    let program = "import os, socket\nline = socket.socket(fileno=3)\n_, fds, _, _ = socket.recv_fds(line, 1, 1)\nprint(os.get_inheritable(fds[0]))";
    let receiver = Peer::start(python_with_fd3(program, &b));
    sys::sendmsg(&a, b"x", &[passed.as_fd()], MsgFlags::MSG_NOSIGNAL).expect("sendmsg");
    assert_eq!(receiver.line(), "True", "inheritable");
    receiver.finish();
}

#[test]
fn no_room_for_a_descriptor_loses_it_and_says_msg_ctrunc() {
    let _scratch = Scratch::new("ctrunc");
    let (a, b) = sys::socketpair(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC).expect("socketpair");
    let (passed, mut other_end) = UnixStream::pair().expect("a pair to pass one end of");
    other_end.set_read_timeout(Some(PATIENCE)).expect("SO_RCVTIMEO");
    sys::sendmsg(&a, b"x", &[passed.as_fd()], MsgFlags::MSG_NOSIGNAL).expect("sendmsg");
    drop(passed);
    let mut byte = [0u8; 1];
    let got = sys::recvmsg(&b, &mut byte, 0, MsgFlags::MSG_CMSG_CLOEXEC).expect("recvmsg");
    assert_eq!(got.bytes, 1, "the byte arrives");
    assert!(got.fds.is_empty(), "no descriptor");
    assert!(got.flags.contains(MsgFlags::MSG_CTRUNC), "{:?}", got.flags);
    // The kernel closed the one that did not fit: nothing holds that end any more.
    let mut buf = [0u8; 1];
    assert_eq!(
        other_end.read(&mut buf).expect("read"),
        0,
        "end of file: the passed end is gone"
    );
}
