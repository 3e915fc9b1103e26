//! What fork does to a server (lesson 07): the child gets copies of every descriptor, and a
//! connection ends only when the last copy is closed (the reason a forking server's parent
//! closes its copy at once), while shutdown(SHUT_WR) ends the stream whatever copies remain
//! (what socketserver's shutdown_request relies on); the child has only the thread that called
//! fork; and a child that exits stays a zombie until its parent waits for it.
//!
//! The children are forked from this (multi-threaded) test process, so they only make
//! async-signal-safe calls (read, _exit): see util/herd.rs.
//!
//! Cost: about 0.1 s (one wait to see that no end of file comes).

use std::io::{ErrorKind, Read};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use crate::util::herd::{Children, FORKING, PATIENCE, exit_now};

/// How long to watch for an end of file that must not come. On loopback a FIN arrives within
/// microseconds of the close that sends it; this is many times that.
const QUIET: Duration = Duration::from_millis(100);

/// The child's whole life: hold every descriptor it inherited until a byte arrives on
/// `release` (or the parent's end closes), then exit.
fn hold_until_released(release: RawFd) -> ! {
    let mut byte = [0u8; 1];
    // SAFETY: `byte` is valid for one byte; read(2) is async-signal-safe.
    unsafe { libc::read(release, byte.as_mut_ptr().cast(), 1) };
    exit_now(0)
}

fn release(pipe: &std::os::fd::OwnedFd) {
    nix::unistd::write(pipe, b"x").expect("write to the child's pipe");
}

/// `Threads:` in /proc/PID/status.
fn threads_of(pid: libc::pid_t) -> usize {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    text.lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("Threads:")
}

/// The process state letter in /proc/PID/stat (`Z` for a zombie).
fn state_of(pid: libc::pid_t) -> char {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    let after_name = text.rsplit_once(") ").expect("the state follows the name").1;
    after_name.chars().next().expect("a state letter")
}

#[test]
fn a_connection_ends_only_when_its_last_copy_is_closed() {
    let _one_at_a_time = FORKING.lock().unwrap_or_else(|e| e.into_inner());
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let mut client = TcpStream::connect(listener.local_addr().expect("its address")).expect("connect");
    let (server_end, _) = listener.accept().expect("accept");
    let (release_read, release_write) = nix::unistd::pipe().expect("pipe");
    let children = Children::fork(1, |_| hold_until_released(release_read.as_raw_fd()));
    drop(release_read);

    // What a forking server's parent does: close its copy of the connection at once.
    drop(server_end);
    client.set_read_timeout(Some(QUIET)).expect("SO_RCVTIMEO");
    let mut buf = [0u8; 8];
    let read = client.read(&mut buf);
    assert!(
        matches!(read, Err(ref e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "the client saw {read:?} while the child still held its copy: the socket ended with the parent's close"
    );

    // The child's copy is the last one: when it goes (the child exits), the FIN comes.
    release(&release_write);
    client.set_read_timeout(Some(PATIENCE)).expect("SO_RCVTIMEO");
    assert_eq!(
        client.read(&mut buf).expect("read"),
        0,
        "end of file once the last copy closed"
    );
    children.reap_all_exited_zero();
}

/// What socketserver's shutdown_request relies on: shutdown acts on the socket, not on one
/// descriptor, so SHUT_WR sends the FIN while a forked child still holds a copy.
#[test]
fn shutdown_ends_the_stream_whatever_copies_remain() {
    let _one_at_a_time = FORKING.lock().unwrap_or_else(|e| e.into_inner());
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let mut client = TcpStream::connect(listener.local_addr().expect("its address")).expect("connect");
    let (server_end, _) = listener.accept().expect("accept");
    let (release_read, release_write) = nix::unistd::pipe().expect("pipe");
    let children = Children::fork(1, |_| hold_until_released(release_read.as_raw_fd()));
    drop(release_read);

    server_end
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown(SHUT_WR)");
    client.set_read_timeout(Some(PATIENCE)).expect("SO_RCVTIMEO");
    let mut buf = [0u8; 8];
    assert_eq!(
        client.read(&mut buf).expect("read"),
        0,
        "end of file, although the child still holds a copy"
    );
    release(&release_write);
    children.reap_all_exited_zero();
}

#[test]
fn a_forked_child_has_only_the_thread_that_called_fork() {
    let _one_at_a_time = FORKING.lock().unwrap_or_else(|e| e.into_inner());
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let other_thread = std::thread::spawn(move || stopped.recv_timeout(PATIENCE));
    let parent = std::process::id() as libc::pid_t;
    assert!(threads_of(parent) >= 2, "this process runs more than one thread");

    let (release_read, release_write) = nix::unistd::pipe().expect("pipe");
    let children = Children::fork(1, |_| hold_until_released(release_read.as_raw_fd()));
    assert_eq!(threads_of(children.pids[0]), 1, "the child has the forking thread only");

    release(&release_write);
    children.reap_all_exited_zero();
    let _ = stop.send(());
    let _ = other_thread.join();
}

#[test]
fn an_exited_child_stays_a_zombie_until_its_parent_waits() {
    let _one_at_a_time = FORKING.lock().unwrap_or_else(|e| e.into_inner());
    let children = Children::fork(1, |_| exit_now(0));
    let child = children.pids[0];
    // It exits at once; nobody has waited for it yet, and SIGCHLD is not ignored here.
    let started = Instant::now();
    while state_of(child) != 'Z' {
        assert!(started.elapsed() < PATIENCE, "the child never became a zombie");
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(QUIET);
    assert_eq!(state_of(child), 'Z', "still a zombie: the kernel keeps it for waitpid");
    children.reap_all_exited_zero();
    assert!(
        std::fs::metadata(format!("/proc/{child}")).is_err(),
        "waitpid took the zombie away"
    );
}
