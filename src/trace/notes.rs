//! The notes table: what a call, or a call's error, means, in a sentence.
//!
//! A row is printed under a call the first time it applies in a run (across every actor and
//! process of a demo); after that the lines speak for themselves. Rows are keyed by syscall,
//! or by syscall and context (`close.listener`: see `context.rs`, which knows what each
//! descriptor is), and optionally narrowed to one errno. A lesson supplies its own words for
//! one particular call with `trace::explain`, which always print and win over this table.

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
    // AF_UNIX names: a path makes a file, an abstract name (a leading NUL, strace's @) does not.
    note(
        "bind.unix",
        "creates the socket's file at that path (ls -l shows type s); closing the socket will not remove it",
    ),
    on_error(
        "bind.unix",
        Errno::EADDRINUSE,
        "a file of that name exists, a dead socket's too: bind never replaces it; unlink it first",
    ),
    note(
        "bind.unix-abstract",
        "an abstract name (sun_path starts with a NUL byte, strace's @): no file; the name lives \
         in the kernel until the last socket bound to it is closed",
    ),
    on_error(
        "bind.unix-abstract",
        Errno::EADDRINUSE,
        "a socket that is still open holds this abstract name",
    ),
    note(
        "listen",
        "a passive socket now: the kernel completes handshakes and queues them (the backlog)",
    ),
    note(
        "listen.unix",
        "a passive socket now: each connect() is queued here until accepted (the backlog); no \
         handshake, both ends are in this kernel",
    ),
    note(
        "accept4",
        "takes one finished connection off the queue: a new descriptor for that conversation",
    ),
    note(
        "connect",
        "TCP: sends SYN and returns when the server's SYN-ACK arrives; the server's side completes \
         on our ACK, whether or not anyone accepted",
    ),
    note(
        "connect.udp",
        "UDP sends nothing: the kernel only remembers the peer, for send() and for filtering recv()",
    ),
    note(
        "connect.unix",
        "AF_UNIX: no packets, no handshake: the kernel queues the connection on the listener at \
         once (connect waits only while that queue is full)",
    ),
    on_error(
        "connect.unix",
        Errno::ECONNREFUSED,
        "a socket file with no listening socket behind it: its server closed it or died",
    ),
    on_error(
        "connect.unix",
        Errno::ENOENT,
        "no such file: nobody bound that name, or it was unlinked",
    ),
    note(
        "connect.unix-dgram",
        "no connection is made: the kernel checks that the name is bound and remembers it as the \
         peer, for send()",
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
        "getsockopt.peercred",
        "who is at the other end, as the kernel recorded it: the process that called connect \
         (seen from a client: listen; in a pair: socketpair)",
    ),
    note(
        "shutdown",
        "closes one direction of the conversation; the descriptor stays open (SHUT_WR sends FIN)",
    ),
    // close means something different for each kind of descriptor: context.rs picks the row.
    note("close", "the descriptor is freed"),
    note(
        "close.tcp",
        "the last descriptor of a connected TCP socket: the kernel sends FIN after anything still queued",
    ),
    note(
        "close.shared",
        "frees this descriptor; copies made by fork or dup share the socket, which ends only when \
         the last of them is closed",
    ),
    note(
        "close.tcp-dead",
        "the connection is already dead (reset or timed out): nothing is sent, the descriptor is freed",
    ),
    note(
        "close.tcp-shut",
        "no second FIN: ours went at shutdown(SHUT_WR); close frees the descriptor",
    ),
    note(
        "close.tcp-unconnected",
        "this TCP socket never had a connection: nothing is sent",
    ),
    note(
        "close.listener",
        "a listener closes with no FIN: connections still queued for accept are reset",
    ),
    note(
        "close.unix",
        "AF_UNIX sends no FIN: the peer's next read returns 0 (end of file)",
    ),
    note(
        "close.udp",
        "UDP has no connection to end: nothing is sent, the port is free again",
    ),
    note(
        "close.unix-unconnected",
        "this AF_UNIX socket never had a peer: nobody is told anything (a file its bind made stays)",
    ),
    note(
        "close.unix-listener",
        "an AF_UNIX listener: connections not yet accepted are reset (ECONNRESET); its socket \
         file stays until unlink",
    ),
    note(
        "close.unix-dgram",
        "nothing is sent: datagrams still queued to this socket are lost, and a sender connected \
         to it gets ECONNREFUSED next",
    ),
    note(
        "close.passed",
        "frees this descriptor only: the copy sent with SCM_RIGHTS keeps the socket open (in \
         flight, then in the receiver)",
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
        "what recv() becomes in the kernel: recvfrom with no address; returns what had arrived, \
         up to the buffer's size",
    ),
    // A read that returns 0: context.rs picks the row.
    note(
        "eof.tcp",
        "0: the peer's FIN arrived: it will send no more (it may still read what we send)",
    ),
    note(
        "eof.unix",
        "0: the peer closed its end (or shut down writing): end of file",
    ),
    note(
        "eof.udp",
        "0 is an empty datagram here, not end of file: UDP has no connection to end",
    ),
    note(
        "eof.unix-dgram",
        "0 is an empty datagram here, not end of file: a datagram socket has no connection to end",
    ),
    note(
        "eof",
        "0: end of file: every writer closed its end (a terminal's Ctrl-D, a pipe's last writer)",
    ),
    note(
        "sendto",
        "one datagram to the address given; UDP keeps it whole or not at all",
    ),
    note(
        "recvfrom",
        "one datagram and who sent it; a buffer too small cuts the datagram and loses the rest",
    ),
    note(
        "sendto.unix",
        "one datagram to the socket bound to that name: kept whole and in order, never dropped \
         (a full queue makes the sender wait)",
    ),
    on_error(
        "sendto.unix",
        Errno::ECONNREFUSED,
        "nobody is bound to that name (any more): it went with its last socket",
    ),
    note(
        "sendmsg",
        "send() with a header: buffers, an address, and control messages; SCM_RIGHTS carries \
         descriptors: a reference to each one's open file rides in the message",
    ),
    note(
        "recvmsg",
        "data and control messages; descriptors sent with SCM_RIGHTS arrive as new numbers here, \
         the lowest free ones",
    ),
    note(
        "unlink",
        "removes the name from its directory; a socket bound to it keeps working, but nobody new \
         can find it",
    ),
    note("read", "read(2) works on sockets too: a socket is a file descriptor"),
    note(
        "read.any",
        "read(2): the next bytes from any descriptor, a terminal, a pipe, a file or a socket",
    ),
    note("write", "write(2) on a socket is send() without flags"),
    note(
        "write.any",
        "write(2): bytes to any descriptor, a terminal, a pipe, a file or a socket",
    ),
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
        "rt_sigprocmask",
        "what sigprocmask()/pthread_sigmask() become: which signals this thread blocks; a blocked \
         signal is not lost, it waits (pending) until unblocked",
    ),
    note(
        "kill",
        "sends a signal to a process; one of its threads that does not block it takes it",
    ),
    note(
        "signalfd4",
        "a descriptor that is readable while one of these signals is pending: block them, then \
         read them like data, in the same wait as the sockets",
    ),
    note(
        "read.signalfd",
        "one struct signalfd_siginfo (128 bytes, ssi_signo first): reading it takes the signal, \
         and no handler runs",
    ),
    note(
        "setitimer",
        "a timer: when it runs out the kernel sends SIGALRM (itself: si_code SI_KERNEL, no sender pid)",
    ),
    note(
        "pipe2",
        "a pipe: bytes written to the second descriptor come out of the first, in order",
    ),
    note(
        "ppoll",
        "poll with a signal mask that holds only while it waits: set and restored in one call",
    ),
    note(
        "epoll_pwait",
        "epoll_wait with a signal mask that holds only while it waits: set and restored in one call",
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

/// The row for a call noted as `key` that ended with `errno` (None when it succeeded): the
/// exact row, else the row of the syscall the key belongs to (`close` for `close.tcp`), else a
/// row for that errno on any call.
pub fn row(key: &str, errno: Option<Errno>) -> Option<&'static Note> {
    let syscall = key.split('.').next().unwrap_or(key);
    let find = |name: &str| NOTES.iter().find(|n| n.syscall == name && n.errno == errno);
    find(key)
        .or_else(|| find(syscall))
        .or_else(|| errno.and_then(|_| find("*")))
}

/// The words for a call noted as `key` that ended with `errno`.
pub fn lookup(key: &str, errno: Option<Errno>) -> Option<&'static str> {
    row(key, errno).map(|n| n.text)
}

/// Whether `text` is one of the table's notes (rather than a lesson's own words).
pub fn is_table_note(text: &str) -> bool {
    NOTES.iter().any(|n| n.text == text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_rows_win_over_wildcards() {
        assert!(
            lookup("connect", Some(Errno::ECONNREFUSED))
                .unwrap()
                .contains("nobody listens there")
        );
        assert!(lookup("recvfrom", Some(Errno::EAGAIN)).unwrap().contains("try again"));
        assert!(lookup("recv", None).unwrap().contains("recvfrom"));
        assert!(lookup("recvfrom", None).unwrap().contains("datagram"));
        assert_eq!(lookup("nosuchcall", None), None);
        assert!(lookup("close.listener", None).unwrap().contains("reset"));
        assert_eq!(lookup("close.nosuchkind", None), lookup("close", None));
        assert_eq!(
            lookup("close.tcp", Some(Errno::EBADF)),
            lookup("close", Some(Errno::EBADF))
        );
        assert!(lookup("recv", Some(Errno::ECONNRESET)).unwrap().contains("RST"));
        assert!(
            lookup("connect.unix", Some(Errno::ECONNREFUSED))
                .unwrap()
                .contains("socket file"),
            "AF_UNIX has no RST: its own row, not TCP's"
        );
        assert!(
            lookup("sendto.unix", Some(Errno::ECONNREFUSED))
                .unwrap()
                .contains("bound")
        );
        assert_eq!(
            lookup("connect.unix", Some(Errno::EAGAIN)),
            lookup("*", Some(Errno::EAGAIN))
        );
        assert!(is_table_note(lookup("eof.tcp", None).unwrap()));
        assert!(!is_table_note("a lesson's own words"));
    }
}
