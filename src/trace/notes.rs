//! The notes table: what a call, or a call's error, means, in a sentence.
//!
//! A note is printed under a call the first time its syscall (or that syscall's errno) shows
//! up in a process; after that the line speaks for itself. A lesson supplies its own words for
//! one particular call with `trace::explain`, which always wins over this table.

use nix::errno::Errno;

/// One row: a syscall, optionally narrowed to one errno, and what it means.
pub struct Note {
    pub syscall: &'static str,
    pub errno: Option<Errno>,
    pub text: &'static str,
}

const fn note(syscall: &'static str, text: &'static str) -> Note {
    Note {
        syscall,
        errno: None,
        text,
    }
}

const fn on_error(syscall: &'static str, errno: Errno, text: &'static str) -> Note {
    Note {
        syscall,
        errno: Some(errno),
        text,
    }
}

/// Rows for a syscall with any errno (`"*"`) match any call that failed with it.
pub const NOTES: &[Note] = &[
    note(
        "socket",
        "a new endpoint; the result is the lowest free descriptor (0-2 are stdio)",
    ),
    note(
        "socketpair",
        "two sockets already connected to each other, no address needed",
    ),
    note("bind", "gives the socket its local address and port"),
    on_error("bind", Errno::EADDRINUSE, "another socket holds this address and port"),
    note(
        "listen",
        "a passive socket now: the kernel completes handshakes and queues them (the backlog)",
    ),
    note(
        "accept4",
        "takes one finished connection off the queue: a new descriptor for that conversation",
    ),
    note(
        "connect",
        "TCP: the three-way handshake, done when this returns; UDP: only remembers the peer",
    ),
    on_error(
        "connect",
        Errno::ECONNREFUSED,
        "nobody listens there: the peer answered the SYN with RST",
    ),
    on_error(
        "connect",
        Errno::EINPROGRESS,
        "non-blocking: the handshake goes on; wait for writable, then read SO_ERROR",
    ),
    note(
        "getsockname",
        "asks the kernel which local address and port the socket ended up with",
    ),
    note("getpeername", "asks the kernel who is at the other end"),
    note("setsockopt", "changes a setting of this socket in the kernel"),
    note(
        "getsockopt",
        "reads a setting back; the kernel may hold a different value than was asked for",
    ),
    note(
        "shutdown",
        "closes one direction of the conversation; the descriptor stays open",
    ),
    note(
        "close",
        "the descriptor is freed; closing the last one of a connected TCP socket sends FIN",
    ),
    on_error("close", Errno::EBADF, "that number is not an open descriptor"),
    // send() and recv() arrive as sendto/recvfrom without an address; the wrappers file their
    // notes under these two names so that datagram calls with an address get their own.
    note(
        "send",
        "what send() becomes in the kernel: sendto with no address; returns bytes queued, maybe fewer",
    ),
    note(
        "recv",
        "what recv() becomes in the kernel: recvfrom; 0 means the peer closed (end of file)",
    ),
    note(
        "sendto",
        "one datagram to the address given; UDP keeps it whole or not at all",
    ),
    note(
        "recvfrom",
        "one datagram and who sent it; a buffer too small cuts the datagram and loses the rest",
    ),
    note("read", "read(2) works on sockets too: a socket is a file descriptor"),
    note("write", "write(2) on a socket is send() without flags"),
    note(
        "fcntl",
        "reads or changes the descriptor's flags, O_NONBLOCK among them",
    ),
    note(
        "pselect6",
        "what select() becomes in the kernel; the sets come back holding only the ready ones",
    ),
    note("poll", "one array of {fd, events}; the kernel fills in revents"),
    note(
        "epoll_create1",
        "an epoll instance: a kernel object that keeps the interest list between calls",
    ),
    note(
        "epoll_ctl",
        "changes the interest list once, instead of passing every fd on every wait",
    ),
    note(
        "epoll_wait",
        "returns only the ready descriptors, however many are watched",
    ),
    note("dup", "a second descriptor for the same open socket"),
    note(
        "prlimit64",
        "what getrlimit/setrlimit become: here RLIMIT_NOFILE, how many descriptors we may hold",
    ),
    note(
        "rt_sigaction",
        "what signal()/sigaction() become: sets what a signal does to this process",
    ),
    note(
        "clone",
        "what fork() becomes: a child process, a copy of this one, descriptors included",
    ),
    note("wait4", "what waitpid() becomes: collects how a child ended"),
    on_error(
        "*",
        Errno::EAGAIN,
        "non-blocking and nothing to do right now: try again when ready",
    ),
    on_error("*", Errno::EINTR, "a signal arrived while the call waited"),
    on_error(
        "*",
        Errno::EPIPE,
        "the peer is gone and we wrote anyway: EPIPE (SIGPIPE unless ignored or MSG_NOSIGNAL)",
    ),
    on_error(
        "*",
        Errno::ECONNRESET,
        "the peer answered with RST: the connection is dead",
    ),
    on_error(
        "*",
        Errno::ECONNREFUSED,
        "an ICMP or RST said nobody listens at that port",
    ),
    on_error(
        "*",
        Errno::EMFILE,
        "this process holds as many descriptors as RLIMIT_NOFILE allows",
    ),
    on_error("*", Errno::ENOTCONN, "the socket is not connected"),
];

/// The words for `syscall` ending with `errno` (None when it succeeded).
pub fn lookup(syscall: &str, errno: Option<Errno>) -> Option<&'static str> {
    let exact = NOTES.iter().find(|n| n.syscall == syscall && n.errno == errno);
    let any_call = || {
        NOTES
            .iter()
            .find(|n| n.syscall == "*" && errno.is_some() && n.errno == errno)
    };
    exact.or_else(any_call).map(|n| n.text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_rows_win_over_wildcards() {
        assert_eq!(lookup("connect", Some(Errno::ECONNREFUSED)), Some(NOTES[7].text));
        assert!(lookup("recvfrom", Some(Errno::EAGAIN)).unwrap().contains("try again"));
        assert!(lookup("recv", None).unwrap().contains("recvfrom"));
        assert!(lookup("recvfrom", None).unwrap().contains("datagram"));
        assert_eq!(lookup("nosuchcall", None), None);
    }
}
