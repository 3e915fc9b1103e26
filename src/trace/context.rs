//! What each descriptor of this process is, so a note can be true in context.
//!
//! "close sends FIN" is true of the last descriptor of a connected TCP socket and false of a
//! listener (queued connections are reset), of a connection already reset (nothing is sent),
//! after shutdown(SHUT_WR) (the FIN went then), of AF_UNIX (the peer reads end-of-file; a
//! listener's file stays) and of UDP (nothing is sent); and a descriptor sent to another
//! process with SCM_RIGHTS lives on there. The wrappers in `src/sys` tell this table what they
//! made and saw (and `strace.rs` tells one table per traced process what strace showed, for
//! `socklab explain`); `close`, a read returning 0, `connect`, `listen` and a datagram's
//! `sendto` ask it which row of the notes table applies.
//!
//! The table is per process and kept only while tracing is on. A forked child starts with a
//! copy in which every descriptor is shared (the parent holds the same sockets).

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Mutex, MutexGuard};

use nix::errno::Errno;

/// What a descriptor refers to, as far as this process has seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A TCP socket with no connection yet (made, perhaps bound).
    TcpFresh,
    /// A non-blocking connect is under way: connected or refused, SO_ERROR will say.
    TcpConnecting,
    TcpConnected,
    TcpListener,
    /// Connected, and our side shut down for writing: our FIN has gone.
    TcpShutWrite,
    /// Reset, timed out or refused: nothing left to end.
    TcpDead,
    Udp,
    /// AF_UNIX, SOCK_STREAM (or SOCK_SEQPACKET) with no peer yet (made, perhaps bound).
    UnixFresh,
    /// Connected, accepted, or one of a pair.
    UnixStream,
    UnixListener,
    UnixDgram,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    kind: Kind,
    /// Another descriptor (a dup, or a forked process's copy) may refer to the same socket.
    shared: bool,
    /// Sent to another process with SCM_RIGHTS: a copy lives on there.
    passed: bool,
}

impl Entry {
    fn new(kind: Kind) -> Entry {
        Entry {
            kind,
            shared: false,
            passed: false,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Table {
    fds: HashMap<RawFd, Entry>,
}

impl Table {
    /// socket(2) or socketpair(2) made `fd` in `domain` with `ty` (flags may be or-ed in).
    pub fn created(&mut self, fd: RawFd, domain: i32, ty: i32) {
        let kind = match (domain, ty & 0xf) {
            (libc::AF_INET | libc::AF_INET6, libc::SOCK_STREAM) => Kind::TcpFresh,
            (libc::AF_INET | libc::AF_INET6, libc::SOCK_DGRAM) => Kind::Udp,
            (libc::AF_UNIX, libc::SOCK_DGRAM) => Kind::UnixDgram,
            (libc::AF_UNIX, _) => Kind::UnixFresh,
            _ => {
                self.fds.remove(&fd);
                return;
            }
        };
        self.fds.insert(fd, Entry::new(kind));
    }

    pub fn listening(&mut self, fd: RawFd) {
        self.change(fd, |kind| match kind {
            Kind::TcpFresh | Kind::TcpListener => Kind::TcpListener,
            Kind::UnixFresh | Kind::UnixListener => Kind::UnixListener,
            other => other,
        });
    }

    /// accept4 on `listener` returned `fd`.
    pub fn accepted(&mut self, listener: RawFd, fd: RawFd) {
        let kind = match self.fds.get(&listener).map(|e| e.kind) {
            Some(Kind::TcpListener) => Kind::TcpConnected,
            Some(Kind::UnixListener) => Kind::UnixStream,
            _ => {
                self.fds.remove(&fd);
                return;
            }
        };
        self.fds.insert(fd, Entry::new(kind));
    }

    /// `fd` was sent to another process with SCM_RIGHTS: closing it here ends nothing there.
    pub fn passed(&mut self, fd: RawFd) {
        if let Some(entry) = self.fds.get_mut(&fd) {
            entry.passed = true;
        }
    }

    /// `fd` arrived with SCM_RIGHTS: a new descriptor for an open file this process knows
    /// nothing about (a socket of any kind, a pipe, a file).
    pub fn received(&mut self, fd: RawFd) {
        self.fds.remove(&fd);
    }

    /// connect returned on `fd`, with `errno` if it failed (socketpair's two ends count as
    /// connected).
    pub fn connected(&mut self, fd: RawFd, errno: Option<Errno>) {
        self.change(fd, |kind| match (kind, errno) {
            (Kind::TcpFresh, None) => Kind::TcpConnected,
            (Kind::TcpFresh, Some(Errno::EINPROGRESS)) => Kind::TcpConnecting,
            // Refused or timed out: no connection was ever made, so closing sends nothing.
            (Kind::TcpFresh, Some(_)) => Kind::TcpFresh,
            (Kind::UnixFresh, None) => Kind::UnixStream,
            (other, _) => other,
        });
    }

    /// getsockopt(SO_ERROR) read `error` (0 for none): how a non-blocking connect ended.
    pub fn pending_error(&mut self, fd: RawFd, error: i32) {
        self.change(fd, |kind| match (kind, error) {
            (Kind::TcpConnecting, 0) => Kind::TcpConnected,
            (Kind::TcpConnecting, _) => Kind::TcpDead,
            (other, _) => other,
        });
    }

    /// shutdown(fd, how); `writes_ended` for SHUT_WR and SHUT_RDWR.
    pub fn shut_down(&mut self, fd: RawFd, writes_ended: bool) {
        if writes_ended {
            self.change(fd, |kind| match kind {
                Kind::TcpConnected => Kind::TcpShutWrite,
                other => other,
            });
        }
    }

    /// A call on `fd` failed with `errno`: a reset, a broken pipe or a timeout ends a TCP
    /// connection for good. (EPIPE after our own shutdown(SHUT_WR) is only that shutdown:
    /// the connection lives on, and its FIN has gone.)
    pub fn failed(&mut self, fd: RawFd, errno: Errno) {
        if matches!(errno, Errno::ECONNRESET | Errno::EPIPE | Errno::ETIMEDOUT) {
            self.change(fd, |kind| match (kind, errno) {
                (Kind::TcpShutWrite, Errno::EPIPE) => Kind::TcpShutWrite,
                (Kind::TcpConnected | Kind::TcpShutWrite | Kind::TcpConnecting, _) => Kind::TcpDead,
                (other, _) => other,
            });
        }
    }

    /// dup made `new` a second descriptor for what `old` refers to.
    pub fn duplicated(&mut self, old: RawFd, new: RawFd) {
        match self.fds.get_mut(&old) {
            Some(entry) => {
                entry.shared = true;
                let copy = *entry;
                self.fds.insert(new, copy);
            }
            None => {
                self.fds.remove(&new);
            }
        }
    }

    /// `fd` was handed to another process (SCM_RIGHTS): that copy shares the socket.
    pub fn sent(&mut self, fd: RawFd) {
        if let Some(entry) = self.fds.get_mut(&fd) {
            entry.shared = true;
        }
    }

    /// close_range(2) closed every descriptor from `first` to `last`.
    pub fn closed_range(&mut self, first: RawFd, last: RawFd) {
        self.fds.retain(|fd, _| !(first..=last).contains(fd));
    }

    /// What `fd` is, if this table knows.
    pub fn kind(&self, fd: RawFd) -> Option<Kind> {
        self.fds.get(&fd).map(|e| e.kind)
    }

    /// After fork, parent and child hold the same sockets.
    pub fn forked(&mut self) {
        for entry in self.fds.values_mut() {
            entry.shared = true;
        }
    }

    /// `fd` is being closed: the notes row that says what that does; it leaves the table.
    pub fn closed(&mut self, fd: RawFd) -> &'static str {
        let Some(entry) = self.fds.remove(&fd) else {
            return "close";
        };
        match entry.kind {
            _ if entry.passed => "close.passed",
            _ if entry.shared => "close.shared",
            Kind::TcpConnected => "close.tcp",
            Kind::TcpShutWrite => "close.tcp-shut",
            Kind::TcpDead => "close.tcp-dead",
            Kind::TcpFresh => "close.tcp-unconnected",
            Kind::TcpListener => "close.listener",
            Kind::Udp => "close.udp",
            Kind::UnixStream => "close.unix",
            Kind::UnixFresh => "close.unix-unconnected",
            Kind::UnixListener => "close.unix-listener",
            Kind::UnixDgram => "close.unix-dgram",
            // Connected or refused: SO_ERROR was never read, so we do not know.
            Kind::TcpConnecting => "close",
        }
    }

    /// A read on `fd` returned 0: the notes row for what that 0 means.
    pub fn end_of_file(&self, fd: RawFd) -> &'static str {
        match self.fds.get(&fd).map(|e| e.kind) {
            Some(Kind::Udp) => "eof.udp",
            Some(Kind::UnixFresh | Kind::UnixStream | Kind::UnixListener) => "eof.unix",
            Some(Kind::UnixDgram) => "eof.unix-dgram",
            Some(_) => "eof.tcp",
            None => "eof",
        }
    }

    /// The notes row for `call` on `fd` where the socket's kind changes what it means:
    /// connect (TCP's handshake, UDP's remembered peer, AF_UNIX's queued connection), listen,
    /// and a datagram's sendto; `call` itself otherwise.
    pub fn note_for(&self, fd: RawFd, call: &'static str) -> &'static str {
        match (call, self.fds.get(&fd).map(|e| e.kind)) {
            ("connect", Some(Kind::Udp)) => "connect.udp",
            ("connect", Some(Kind::UnixFresh | Kind::UnixStream)) => "connect.unix",
            ("connect", Some(Kind::UnixDgram)) => "connect.unix-dgram",
            ("listen", Some(Kind::UnixFresh | Kind::UnixListener)) => "listen.unix",
            ("sendto", Some(Kind::UnixDgram)) => "sendto.unix",
            // Not a socket this process made or accepted: stdin, a pipe, a file, a descriptor
            // that came from elsewhere.
            ("read", None) => "read.any",
            ("write", None) => "write.any",
            _ => call,
        }
    }

    fn change(&mut self, fd: RawFd, to: impl FnOnce(Kind) -> Kind) {
        if let Some(entry) = self.fds.get_mut(&fd) {
            entry.kind = to(entry.kind);
        }
    }
}

// A pointer rather than a static Mutex so that a forked child can start a fresh one: the
// parent's lock may have been held by a thread that does not exist in the child.
static TABLE: AtomicPtr<Mutex<Table>> = AtomicPtr::new(std::ptr::null_mut());

/// This process's table, locked.
pub fn table() -> MutexGuard<'static, Table> {
    let mut current = TABLE.load(Ordering::Acquire);
    if current.is_null() {
        let fresh = Box::into_raw(Box::default());
        current = match TABLE.compare_exchange(std::ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => fresh,
            Err(existing) => {
                // SAFETY: `fresh` came from Box::into_raw just above and was never shared.
                drop(unsafe { Box::from_raw(fresh) });
                existing
            }
        };
    }
    // SAFETY: a non-null TABLE always points to a leaked Box that is never freed.
    let mutex = unsafe { &*current };
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// In a forked child: a table of its own, a copy of the parent's with everything shared (or
/// an empty one, if another thread held the parent's lock at the fork).
pub fn after_fork_in_child() {
    let current = TABLE.load(Ordering::Acquire);
    let mut copy = if current.is_null() {
        Table::default()
    } else {
        // SAFETY: a non-null TABLE always points to a leaked Box that is never freed.
        let mutex = unsafe { &*current };
        mutex.try_lock().map(|t| t.clone()).unwrap_or_default()
    };
    copy.forked();
    // The parent's table is leaked on purpose: its lock may be held forever.
    TABLE.store(Box::into_raw(Box::new(Mutex::new(copy))), Ordering::Release);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(table: &mut Table, fd: RawFd) {
        table.created(fd, libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC);
    }

    #[test]
    fn close_says_what_closing_this_descriptor_does() {
        let mut table = Table::default();
        tcp(&mut table, 3);
        table.listening(3);
        table.accepted(3, 4);
        assert_eq!(table.closed(4), "close.tcp", "a connected TCP socket sends FIN");
        assert_eq!(table.closed(3), "close.listener", "a listener resets what is queued");

        tcp(&mut table, 3);
        table.connected(3, None);
        table.failed(3, Errno::ECONNRESET);
        assert_eq!(table.closed(3), "close.tcp-dead", "after a reset nothing is sent");

        tcp(&mut table, 3);
        table.connected(3, None);
        table.failed(3, Errno::EAGAIN);
        table.shut_down(3, true);
        assert_eq!(table.closed(3), "close.tcp-shut", "the FIN went at shutdown");

        tcp(&mut table, 3);
        table.connected(3, None);
        table.shut_down(3, true);
        table.failed(3, Errno::EPIPE);
        assert_eq!(
            table.closed(3),
            "close.tcp-shut",
            "EPIPE from our own SHUT_WR: the FIN went at shutdown, nothing was reset"
        );

        tcp(&mut table, 3);
        table.connected(3, None);
        table.shut_down(3, true);
        table.failed(3, Errno::ECONNRESET);
        assert_eq!(table.closed(3), "close.tcp-dead", "a reset after the shutdown");

        tcp(&mut table, 3);
        assert_eq!(table.closed(3), "close.tcp-unconnected");

        tcp(&mut table, 3);
        table.connected(3, Some(Errno::ECONNREFUSED));
        assert_eq!(
            table.closed(3),
            "close.tcp-unconnected",
            "refused: it never had a connection"
        );

        table.created(3, libc::AF_INET, libc::SOCK_DGRAM);
        assert_eq!(table.closed(3), "close.udp");
        table.created(3, libc::AF_UNIX, libc::SOCK_STREAM);
        table.created(4, libc::AF_UNIX, libc::SOCK_STREAM);
        table.connected(3, None);
        table.connected(4, None);
        assert_eq!(table.closed(4), "close.unix");
        assert_eq!(table.closed(9), "close", "an unknown (inherited) descriptor");
        assert_eq!(table.closed(3), "close.unix");
        assert_eq!(table.closed(3), "close", "closed already: unknown now");
        table.created(3, libc::AF_UNIX, libc::SOCK_STREAM);
        table.connected(3, Some(Errno::ENOENT));
        assert_eq!(
            table.closed(3),
            "close.unix-unconnected",
            "no peer: nobody reads an end of file"
        );
        table.created(3, libc::AF_UNIX, libc::SOCK_STREAM);
        table.listening(3);
        table.accepted(3, 4);
        assert_eq!(
            table.closed(4),
            "close.unix",
            "an accepted AF_UNIX connection has a peer"
        );
        assert_eq!(table.closed(3), "close.unix-listener", "a listener has none");
    }

    #[test]
    fn read_and_write_speak_of_sockets_only_on_sockets() {
        let mut table = Table::default();
        table.created(3, libc::AF_INET, libc::SOCK_STREAM);
        assert_eq!(table.note_for(3, "read"), "read");
        assert_eq!(table.note_for(3, "write"), "write");
        assert_eq!(
            table.note_for(0, "read"),
            "read.any",
            "stdin: a terminal, a pipe, a file"
        );
        assert_eq!(table.note_for(1, "write"), "write.any");
    }

    #[test]
    fn af_unix_listeners_datagrams_and_passed_descriptors() {
        let mut table = Table::default();
        table.created(3, libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC);
        assert_eq!(table.note_for(3, "listen"), "listen.unix");
        table.listening(3);
        table.accepted(3, 4);
        assert_eq!(table.end_of_file(4), "eof.unix");
        table.passed(4);
        assert_eq!(table.closed(4), "close.passed", "a copy lives on in the receiver");
        assert_eq!(
            table.closed(3),
            "close.unix-listener",
            "queued clients reset, the file stays"
        );

        table.created(3, libc::AF_UNIX, libc::SOCK_DGRAM);
        assert_eq!(table.note_for(3, "sendto"), "sendto.unix");
        assert_eq!(table.note_for(3, "connect"), "connect.unix-dgram");
        assert_eq!(table.end_of_file(3), "eof.unix-dgram");
        assert_eq!(table.closed(3), "close.unix-dgram");

        table.created(5, libc::AF_UNIX, libc::SOCK_STREAM);
        assert_eq!(table.note_for(5, "connect"), "connect.unix");
        table.connected(5, Some(Errno::ECONNREFUSED));
        assert_eq!(
            table.closed(5),
            "close.unix-unconnected",
            "refused: it never had a peer"
        );
        table.created(5, libc::AF_UNIX, libc::SOCK_STREAM);
        table.received(5);
        assert_eq!(
            table.closed(5),
            "close",
            "a descriptor that arrived by SCM_RIGHTS: unknown"
        );
    }

    #[test]
    fn a_non_blocking_connect_ends_as_so_error_says() {
        let mut table = Table::default();
        tcp(&mut table, 3);
        table.connected(3, Some(Errno::EINPROGRESS));
        table.pending_error(3, 0);
        assert_eq!(table.closed(3), "close.tcp");
        tcp(&mut table, 3);
        table.connected(3, Some(Errno::EINPROGRESS));
        table.pending_error(3, libc::ECONNREFUSED);
        assert_eq!(table.closed(3), "close.tcp-dead");
        tcp(&mut table, 3);
        table.connected(3, Some(Errno::EINPROGRESS));
        assert_eq!(table.closed(3), "close", "never asked: connected or refused, unknown");
    }

    #[test]
    fn copies_share_the_socket() {
        let mut table = Table::default();
        tcp(&mut table, 3);
        table.connected(3, None);
        table.duplicated(3, 9);
        assert_eq!(table.closed(9), "close.shared");
        assert_eq!(table.closed(3), "close.shared");
        tcp(&mut table, 3);
        table.listening(3);
        table.forked();
        assert_eq!(table.closed(3), "close.shared");
    }

    #[test]
    fn end_of_file_means_what_the_socket_is() {
        let mut table = Table::default();
        tcp(&mut table, 3);
        table.connected(3, None);
        table.created(4, libc::AF_INET6, libc::SOCK_DGRAM);
        table.created(5, libc::AF_UNIX, libc::SOCK_STREAM);
        table.connected(5, None);
        assert_eq!(table.end_of_file(3), "eof.tcp");
        assert_eq!(table.end_of_file(4), "eof.udp");
        assert_eq!(table.end_of_file(5), "eof.unix");
        assert_eq!(table.end_of_file(0), "eof", "stdin, a pipe: plain end of file");
        assert_eq!(table.note_for(4, "connect"), "connect.udp");
        assert_eq!(table.note_for(3, "connect"), "connect");
        assert_eq!(table.note_for(4, "sendto"), "sendto", "UDP's own row");
    }
}
