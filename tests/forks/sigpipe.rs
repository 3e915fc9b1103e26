//! Lesson 06's claims about writing to a peer that has gone: the first send after the peer's
//! close succeeds and brings back an RST; the next send fails with EPIPE and raises SIGPIPE,
//! which kills a process whose SIGPIPE is at SIG_DFL (write(2) too), unless the send carries
//! MSG_NOSIGNAL; Rust's runtime and Python both start with SIGPIPE ignored, and Python turns
//! EPIPE into BrokenPipeError; strace shows the failed sendto, then the signal, then the kill;
//! a peer that only shut down its sending side still reads, so nothing fails at all.
//!
//! The children are made with fork from this multi-threaded test process, so between fork and
//! `_exit` they only make async-signal-safe calls (sigaction, send, write, poll) and never
//! allocate or panic. The tests take one lock (the one every test in `tests/forks/` takes) so that
//! no child inherits another test's sockets.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::Command;
use std::sync::MutexGuard;

use crate::util;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigHandler, Signal, signal};
use nix::sys::socket::{MsgFlags, recv, send};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork};

/// What the server sends to a client that has hung up.
const REPLY: &[u8] = b"server: good bye\n";
/// The RST comes back within microseconds on loopback; this only bounds a broken run.
const RST_WAIT_MS: u16 = 5000;

/// The lock every test of `tests/forks/` holds while it forks or has children.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    util::herd::FORKING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A connection whose client end is closed: returns the server end, after its recv returned
/// 0 (the client's FIN has arrived). Nothing has been sent to the client yet.
fn hung_up_connection() -> OwnedFd {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding 127.0.0.1:0");
    let client = TcpStream::connect(listener.local_addr().expect("its address")).expect("connecting");
    let (server, _) = listener.accept().expect("accepting");
    drop(client);
    let server = OwnedFd::from(server);
    let mut buf = [0u8; 16];
    assert_eq!(
        recv(server.as_raw_fd(), &mut buf, MsgFlags::empty()),
        Ok(0),
        "the client's close should read as end of file"
    );
    server
}

/// Waits, with events=0, for the POLLERR|POLLHUP that the peer's RST brings. Async-signal-safe.
fn wait_for_reset(fd: &OwnedFd) -> Option<PollFlags> {
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::empty())];
    match poll(&mut fds, PollTimeout::from(RST_WAIT_MS)) {
        Ok(1) => fds[0].revents(),
        _ => None,
    }
}

/// Runs `body` in a forked child that ends with `_exit(body())`, and returns how it ended.
fn in_child(body: impl FnOnce() -> i32) -> WaitStatus {
    // SAFETY: the child only runs `body`, which makes async-signal-safe calls and neither
    // allocates nor panics, then calls _exit; the parent only waits.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            let code = body();
            // SAFETY: _exit ends the child at once, running nothing of the parent's (no
            // atexit handlers, no destructors), which is what a forked child must do.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => waitpid(child, None).expect("waitpid"),
    }
}

/// Exit codes a child uses to say which step went wrong.
const FIRST_SEND_FAILED: i32 = 10;
const NO_RESET: i32 = 11;
const SURVIVED_SECOND_SEND: i32 = 12;
const WRONG_ERROR: i32 = 13;
const SIGACTION_FAILED: i32 = 14;

/// In a child: SIGPIPE back to SIG_DFL, the first reply (must succeed), then wait for the RST.
fn first_reply_with_sigpipe_at_default(conn: &OwnedFd, flags: MsgFlags) -> Result<(), i32> {
    // SAFETY: SIG_DFL installs no handler function, so nothing can run in signal context.
    if unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }.is_err() {
        return Err(SIGACTION_FAILED);
    }
    if send(conn.as_raw_fd(), REPLY, flags) != Ok(REPLY.len()) {
        return Err(FIRST_SEND_FAILED);
    }
    if wait_for_reset(conn).is_none_or(|r| !r.contains(PollFlags::POLLERR)) {
        return Err(NO_RESET);
    }
    Ok(())
}

#[test]
fn the_first_send_after_the_peers_close_succeeds_and_the_next_fails_with_epipe() {
    let _serial = one_at_a_time();
    let conn = hung_up_connection();
    assert_eq!(
        send(conn.as_raw_fd(), REPLY, MsgFlags::MSG_NOSIGNAL),
        Ok(REPLY.len()),
        "the peer only sent FIN: the first send is accepted whole"
    );
    assert_eq!(
        wait_for_reset(&conn),
        Some(PollFlags::POLLERR | PollFlags::POLLHUP),
        "with events=0, poll reports the RST as POLLERR|POLLHUP"
    );
    assert_eq!(send(conn.as_raw_fd(), REPLY, MsgFlags::MSG_NOSIGNAL), Err(Errno::EPIPE));
    assert_eq!(
        send(conn.as_raw_fd(), REPLY, MsgFlags::MSG_NOSIGNAL),
        Err(Errno::EPIPE),
        "and every send after that"
    );
}

#[test]
fn rusts_runtime_ignores_sigpipe_before_main() {
    let _serial = one_at_a_time();
    // SAFETY: a zeroed sigaction is a valid out-buffer; a null new action only reads the old.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: as above; SIGPIPE is a valid signal and `old` outlives the call.
    let rc = unsafe { libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) };
    assert_eq!(rc, 0);
    assert_eq!(old.sa_sigaction, libc::SIG_IGN, "SIGPIPE should start ignored");
}

#[test]
fn with_sigpipe_at_default_the_second_send_kills_the_child() {
    let _serial = one_at_a_time();
    let conn = hung_up_connection();
    let status = in_child(|| {
        if let Err(code) = first_reply_with_sigpipe_at_default(&conn, MsgFlags::empty()) {
            return code;
        }
        let _ = send(conn.as_raw_fd(), REPLY, MsgFlags::empty());
        SURVIVED_SECOND_SEND
    });
    assert!(
        matches!(status, WaitStatus::Signaled(_, Signal::SIGPIPE, false)),
        "the child should be killed by SIGPIPE (codes: 10 first send failed, 11 no RST, 12 survived); got {status:?}"
    );
}

#[test]
fn with_sigpipe_at_default_write_kills_the_child_too() {
    let _serial = one_at_a_time();
    let conn = hung_up_connection();
    let status = in_child(|| {
        if let Err(code) = first_reply_with_sigpipe_at_default(&conn, MsgFlags::empty()) {
            return code;
        }
        // write(2) has no flags argument: no MSG_NOSIGNAL is possible.
        let _ = nix::unistd::write(&conn, REPLY);
        SURVIVED_SECOND_SEND
    });
    assert!(
        matches!(status, WaitStatus::Signaled(_, Signal::SIGPIPE, false)),
        "write(2) should raise SIGPIPE like send with flags 0; got {status:?}"
    );
}

#[test]
fn with_msg_nosignal_the_child_gets_epipe_and_exits_normally() {
    let _serial = one_at_a_time();
    let conn = hung_up_connection();
    let status = in_child(|| {
        if let Err(code) = first_reply_with_sigpipe_at_default(&conn, MsgFlags::MSG_NOSIGNAL) {
            return code;
        }
        match send(conn.as_raw_fd(), REPLY, MsgFlags::MSG_NOSIGNAL) {
            Err(Errno::EPIPE) => 0,
            Ok(_) => SURVIVED_SECOND_SEND,
            Err(_) => WRONG_ERROR,
        }
    });
    assert!(
        matches!(status, WaitStatus::Exited(_, 0)),
        "the child should get EPIPE and exit 0 (codes: 10 first send failed, 11 no RST, 12 survived, \
         13 not EPIPE); got {status:?}"
    );
}

#[test]
fn python_ignores_sigpipe_and_raises_broken_pipe_error() {
    let _serial = one_at_a_time();
    util::require("python3");
    let script = r#"
import select, signal, socket
print(signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN)
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(1)
client = socket.create_connection(listener.getsockname())
conn, _ = listener.accept()
client.close()
print(repr(conn.recv(100)))
print(conn.send(b"server: good bye\n"))
waiter = select.poll()
waiter.register(conn, 0)
print(waiter.poll(5000) == [(conn.fileno(), select.POLLERR | select.POLLHUP)])
try:
    conn.sendall(b"server: good bye\n")
    print("no error")
except BrokenPipeError as error:
    print(type(error).__name__, error.errno, isinstance(error, socket.error))
"#;
    let mut command = Command::new("python3");
    command.args(["-c", script]);
    let output = util::run_with_deadline(command, std::time::Duration::from_secs(30));
    assert!(
        output.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "True\nb''\n17\nTrue\nBrokenPipeError 32 True\n"
    );
}

#[test]
fn a_peer_that_only_shut_down_its_sending_side_still_reads_so_no_epipe() {
    let _serial = one_at_a_time();
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding 127.0.0.1:0");
    let client = TcpStream::connect(listener.local_addr().expect("its address")).expect("connecting");
    client
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .expect("SO_RCVTIMEO");
    let (server, _) = listener.accept().expect("accepting");
    client.shutdown(std::net::Shutdown::Write).expect("shutdown(SHUT_WR)");
    let mut buf = [0u8; 64];
    assert_eq!(
        recv(server.as_raw_fd(), &mut buf, MsgFlags::empty()),
        Ok(0),
        "FIN: end of file"
    );
    for _ in 0..2 {
        assert_eq!(send(server.as_raw_fd(), REPLY, MsgFlags::MSG_NOSIGNAL), Ok(REPLY.len()));
        assert_eq!(
            recv(client.as_raw_fd(), &mut buf, MsgFlags::empty()),
            Ok(REPLY.len()),
            "the half-closed peer still reads"
        );
    }
}

/// Python's send under the real strace: the syscall returns EPIPE, then the signal is shown,
/// and with SIG_DFL the process is killed by it.
#[test]
fn strace_shows_the_epipe_then_the_signal_and_the_kill() {
    let _serial = one_at_a_time();
    util::require("strace");
    util::require("python3");
    let script = |disposition: &str| {
        format!(
            r#"
import select, signal, socket
signal.signal(signal.SIGPIPE, signal.{disposition})
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(1)
client = socket.create_connection(listener.getsockname())
conn, _ = listener.accept()
client.close()
conn.recv(100)
conn.send(b"server: good bye\n")
waiter = select.poll()
waiter.register(conn, 0)
waiter.poll(5000)
try:
    conn.send(b"server: good bye\n")
except BrokenPipeError:
    pass
"#
        )
    };
    for (disposition, ending) in [
        ("SIG_IGN", "+++ exited with 0 +++"),
        ("SIG_DFL", "+++ killed by SIGPIPE +++"),
    ] {
        let log = std::env::temp_dir().join(format!("socklab-sigpipe-{disposition}-{}.txt", std::process::id()));
        let mut command = Command::new("strace");
        command
            .args(["-e", "trace=sendto", "-o"])
            .arg(&log)
            .args(["python3", "-c", &script(disposition)]);
        let output = util::run_with_deadline(command, std::time::Duration::from_secs(30));
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        // strace ends the way its tracee ended: killed by SIGPIPE in the SIG_DFL run.
        assert!(
            !text.is_empty(),
            "strace wrote no log: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let lines: Vec<&str> = text.lines().collect();
        let failed = lines
            .iter()
            .position(|l| l.starts_with("sendto(") && l.ends_with("= -1 EPIPE (Broken pipe)"))
            .unwrap_or_else(|| panic!("no sendto = -1 EPIPE with {disposition}:\n{text}"));
        assert!(
            lines[failed + 1].starts_with("--- SIGPIPE {si_signo=SIGPIPE, si_code=SI_USER"),
            "with {disposition}, the signal follows the failed sendto:\n{text}"
        );
        assert_eq!(lines.last().copied(), Some(ending), "with {disposition}:\n{text}");
    }
}

#[test]
fn a_send_that_meets_a_reset_gets_econnreset_and_no_sigpipe() {
    let _serial = one_at_a_time();
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding 127.0.0.1:0");
    let client = TcpStream::connect(listener.local_addr().expect("its address")).expect("connecting");
    let (server, _) = listener.accept().expect("accepting");
    let server = OwnedFd::from(server);
    let abort = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    nix::sys::socket::setsockopt(&server, nix::sys::socket::sockopt::Linger, &abort).expect("SO_LINGER");
    drop(server);
    let client = OwnedFd::from(client);
    let status = in_child(|| {
        // SAFETY: SIG_DFL installs no handler function, so nothing can run in signal context.
        if unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }.is_err() {
            return SIGACTION_FAILED;
        }
        if wait_for_reset(&client).is_none_or(|r| !r.contains(PollFlags::POLLERR)) {
            return NO_RESET;
        }
        match send(client.as_raw_fd(), REPLY, MsgFlags::empty()) {
            Err(Errno::ECONNRESET) => 0,
            Ok(_) => SURVIVED_SECOND_SEND,
            Err(_) => WRONG_ERROR,
        }
    });
    assert!(
        matches!(status, WaitStatus::Exited(_, 0)),
        "flags 0 and SIG_DFL, yet ECONNRESET and no signal (codes: 11 no RST, 12 send worked, 13 not \
         ECONNRESET); got {status:?}"
    );
}
