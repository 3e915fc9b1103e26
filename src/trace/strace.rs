//! strace's own output read back: each line of `strace -f -ttt -T` as a trace item, with the lessons' notes.
//!
//! `socklab explain` runs a command under strace and hands its output here as it comes.
//! strace has already put every thread's calls in one order, and split a call into an
//! `<unfinished ...>` and a `<... resumed>` half where another line came between; those
//! shapes are kept. Each line becomes one item (a whole call, one of its halves, or a
//! signal or exit mark) and goes through the same notes, folding and printing as a lesson's
//! trace. The call and its result are strace's text, byte for byte; what is added is the
//! actor, the time and the note. Only the spaces before ` = ` are laid out again: strace puts
//! `=` at column 40 counted from its `PID TIME ` prefix, the trace from the start of the
//! call, as strace does when it prints a single process.
//!
//! The notes are the lessons' table, picked by the same descriptor table (`context.rs`),
//! fed from what strace shows: socket and socketpair results and families, accept, listen,
//! connect and SO_ERROR, shutdown, errors, dup, close, descriptors sent with SCM_RIGHTS. A
//! fork gives the child a copy, a thread shares its process's table, a successful exec starts
//! an empty one (what it kept is unknown, so it gets the plain notes). A row prints only where
//! it is true: no note for calls the lessons do not teach, socket rows that speak of ports,
//! handshakes or FIN only for the sockets they are true of, the read and write rows only on
//! sockets, an errno row meant for any call only where that errno means what it says.
//!
//! Human output shows a call still running after [`HOLDBACK`] as its `<unfinished ...>`
//! half (strace has already written the part known on entry), as a lesson's trace does.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Instant;

use nix::errno::Errno;

use super::context::{Kind, Table};
use super::notes;
use super::order::{Call, Item};
use super::pieces::{Args, Piece};
use super::render;
use super::sink::{HOLDBACK, Mode, Printer};

/// The calls the lessons teach, which `socklab explain` shows unless told `--all`: sockets,
/// I/O on descriptors, select/poll/epoll, fcntl/ioctl, close, fork/clone/exec/wait, signals.
/// A `?` marks a name some architectures lack (strace then skips it instead of failing).
#[rustfmt::skip]
pub const TAUGHT: &[&str] = &[
    // sockets
    "socket", "socketpair", "bind", "listen", "?accept", "accept4", "connect", "getsockname",
    "getpeername", "setsockopt", "getsockopt", "shutdown", "sendto", "recvfrom", "sendmsg",
    "recvmsg", "sendmmsg", "recvmmsg",
    // I/O on descriptors, where they come from and where they go
    "read", "write", "readv", "writev", "pread64", "pwrite64", "sendfile", "?pipe", "pipe2", "dup",
    "?dup2", "dup3", "close", "?close_range",
    // waiting for many descriptors
    "?select", "pselect6", "?poll", "ppoll", "?epoll_create", "epoll_create1", "epoll_ctl",
    "?epoll_wait", "epoll_pwait", "?epoll_pwait2",
    // descriptor settings, and limits
    "fcntl", "ioctl", "prlimit64",
    // processes
    "?fork", "?vfork", "clone", "?clone3", "execve", "execveat", "wait4", "waitid", "exit",
    "exit_group",
    // signals
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait", "kill",
    "tkill", "tgkill", "?pause", "?alarm", "?signalfd", "signalfd4",
];

/// Calls that move bytes through a descriptor: their EAGAIN, EPIPE, ECONNRESET... mean what
/// the errno rows say.
#[rustfmt::skip]
const MOVES_BYTES: &[&str] = &[
    "read", "write", "readv", "writev", "pread64", "pwrite64", "sendfile", "sendto", "recvfrom",
    "sendmsg", "recvmsg", "sendmmsg", "recvmmsg",
];

/// Calls that read: a 0 they return is end of file (or an empty datagram).
#[rustfmt::skip]
const READS: &[&str] = &["read", "readv", "pread64", "recvfrom", "recvmsg"];

/// Calls whose first argument is a socket.
#[rustfmt::skip]
const ON_A_SOCKET: &[&str] = &[
    "bind", "listen", "accept", "accept4", "connect", "getsockname", "getpeername", "setsockopt",
    "getsockopt", "shutdown",
];

/// Calls that make a descriptor (EMFILE means the table is full).
#[rustfmt::skip]
const MAKES_A_DESCRIPTOR: &[&str] = &[
    "socket", "socketpair", "accept", "accept4", "dup", "dup2", "dup3", "fcntl", "pipe", "pipe2",
    "epoll_create", "epoll_create1", "signalfd", "signalfd4",
];

/// The notes key of the rows meant for any call (EAGAIN, EINTR...): a taught call whose own
/// row is not true here, or that has none, is noted only by those.
const ANY_CALL: &str = "*";

/// Calls that make a thread or a process.
#[rustfmt::skip]
const CLONES: &[&str] = &["clone", "clone3", "fork", "vfork"];

/// Calls whose result, or first argument, is a process id.
#[rustfmt::skip]
const PIDS: &[&str] = &["clone", "clone3", "fork", "vfork", "wait4", "kill", "tkill", "tgkill"];

/// Reads strace's output and prints it as a trace.
pub struct Reader {
    decoder: Decoder,
    printer: Printer,
    /// Human output: show a call still running after HOLDBACK as its first half.
    live: bool,
    /// What strace has written of a line it has not finished.
    partial: Vec<u8>,
    /// When `partial` began waiting.
    partial_since: Option<Instant>,
    /// How much of `partial` was shown as an `<unfinished ...>` half.
    shown: Option<usize>,
}

impl Reader {
    /// A reader printing in `mode` (human, json or plain) with times counted from `origin`
    /// (CLOCK_REALTIME nanoseconds: `-ttt` prints that clock), for a command started as
    /// `command` (the first process's name until it execs).
    pub fn new(mode: Mode, origin: u64, command: &str) -> Reader {
        Reader {
            decoder: Decoder::new(command),
            printer: Printer::new(mode, origin, None),
            live: mode == Mode::Human,
            partial: Vec::new(),
            partial_since: None,
            shown: None,
        }
    }

    /// strace's output, as it arrives.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.partial.extend_from_slice(bytes);
        let mut items = Vec::new();
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line[..end]);
            items.extend(self.decoder.line(&text, self.shown.take()));
            self.partial_since = None;
        }
        if !self.partial.is_empty() && self.partial_since.is_none() {
            self.partial_since = Some(Instant::now());
        }
        self.printer.print_shaped(items);
    }

    /// Call often while waiting for output: in human mode, a call that has been running for
    /// HOLDBACK shows its first half.
    pub fn tick(&mut self) {
        let waiting = self.partial_since.is_some_and(|since| since.elapsed() >= HOLDBACK);
        if self.live && waiting && self.shown.is_none() {
            let text = String::from_utf8_lossy(&self.partial).into_owned();
            if let Some(item) = self.decoder.running(&text) {
                self.shown = Some(self.partial.len());
                self.printer.print_shaped(vec![item]);
            }
        }
    }

    /// strace has ended: prints what is left.
    pub fn end(&mut self) {
        if !self.partial.is_empty() {
            self.feed(b"\n");
        }
        self.printer.end();
    }
}

/// A thread strace reported on.
struct Thread {
    /// Its process (thread group).
    pid: i32,
    /// The program it runs, from the command line or its last exec.
    program: String,
    /// Its name in the trace: the program's, numbered from the second on (`python3#2`).
    actor: String,
    /// Its descriptor table: shared by the threads of a process, copied by fork.
    table: Rc<RefCell<Table>>,
}

/// A thread or process a clone returned before strace showed a line of its own.
struct Birth {
    pid: i32,
    program: String,
    table: Rc<RefCell<Table>>,
}

/// The first half of a split call: when, and what strace printed of it.
struct Open {
    t: u64,
    name: String,
    before: String,
}

/// Turns strace's lines into items, keeping what it learns about threads and descriptors.
struct Decoder {
    threads: HashMap<i32, Thread>,
    /// How many actors have had each program's name.
    names: HashMap<String, u32>,
    command: String,
    births: HashMap<i32, Birth>,
    open: HashMap<i32, Open>,
}

/// How a call ended, as far as its notes care.
enum Outcome {
    /// It returned this value (None: not a number, such as `0x7f… ` from mmap).
    Returned(Option<i64>),
    /// It failed: `-1 ENAME (...)`, the errno when it prints exactly as strace printed it.
    Failed(Option<Errno>),
    /// `= ?` (never returned) or `= ? ERESTARTSYS (...)` (restarted by the kernel).
    Unknown,
}

impl Decoder {
    fn new(command: &str) -> Decoder {
        let program = command.rsplit('/').next().unwrap_or(command).to_string();
        Decoder {
            threads: HashMap::new(),
            names: HashMap::new(),
            command: program,
            births: HashMap::new(),
            open: HashMap::new(),
        }
    }

    /// The items one line of strace's makes. `shown`: this line's first `shown` bytes were
    /// already shown as an `<unfinished ...>` half (see [`Decoder::running`]).
    fn line(&mut self, line: &str, shown: Option<usize>) -> Vec<Item> {
        let Some((tid, t, rest)) = prefix(line) else {
            return Vec::new();
        };
        let prefix_len = line.len() - rest.len();
        let (rest, took) = syscall_time(rest);
        self.thread(tid);
        if let Some(shown) = shown {
            let already = shown.saturating_sub(prefix_len);
            if rest.ends_with(" <unfinished ...>") {
                // strace finished the line we showed: nothing new.
                return Vec::new();
            }
            if let (Some(open), Some(tail)) = (self.open.remove(&tid), rest.get(already..)) {
                if let Some((after, ret)) = close_and_result(tail) {
                    return vec![self.complete(
                        tid,
                        &open.name,
                        &open.before,
                        Some(after),
                        ret,
                        open.t,
                        t + took,
                        took,
                    )];
                }
            }
        }
        match shape(rest) {
            Shape::Whole { name, args, ret } => vec![self.complete(tid, name, args, None, ret, t, t + took, took)],
            Shape::Unfinished { name, args } => {
                let item = self.unfinished(tid, t, name, args);
                vec![item]
            }
            Shape::Resumed { name, args, ret } => {
                let (enter_t, before) = match self.open.remove(&tid) {
                    Some(open) => (open.t, open.before),
                    None => (t.saturating_sub(took), String::new()),
                };
                vec![self.complete(tid, name, &before, Some(args), ret, enter_t, t, took)]
            }
            Shape::Mark(text) => {
                let thread = &self.threads[&tid];
                let item = Item::Mark {
                    t,
                    pid: thread.pid,
                    tid,
                    actor: thread.actor.clone(),
                    text: pieces(text),
                };
                // `+++ exited with 0 +++`, `+++ killed by SIGPIPE +++`: this thread is gone.
                if text.starts_with("+++") {
                    self.threads.remove(&tid);
                    self.open.remove(&tid);
                }
                vec![item]
            }
        }
    }

    /// The first half of a call strace is still writing (a partial line that has waited):
    /// `accept4(3, ` becomes `accept4(3,  <unfinished ...>`.
    fn running(&mut self, partial: &str) -> Option<Item> {
        let (tid, t, rest) = prefix(partial)?;
        let (name, args) = rest.split_once('(')?;
        if !is_name(name) || self.open.contains_key(&tid) {
            return None;
        }
        self.thread(tid);
        Some(self.unfinished(tid, t, name, args))
    }

    fn unfinished(&mut self, tid: i32, t: u64, name: &str, args: &str) -> Item {
        self.open.insert(
            tid,
            Open {
                t,
                name: name.to_string(),
                before: args.to_string(),
            },
        );
        let (before, fills) = match args.strip_suffix(", ") {
            Some(known) => (one_arg(name, known), true),
            None => (one_arg(name, args), false),
        };
        let thread = &self.threads[&tid];
        Item::Unfinished {
            t,
            pid: thread.pid,
            tid,
            actor: thread.actor.clone(),
            name: name.to_string(),
            before,
            fills,
        }
    }

    /// A call that returned: its item (whole, or the second half of a split one) with the
    /// notes row its context chose; the descriptor table learns from it.
    #[allow(clippy::too_many_arguments)]
    fn complete(
        &mut self,
        tid: i32,
        name: &str,
        before: &str,
        after: Option<&str>,
        ret: &str,
        enter_t: u64,
        exit_t: u64,
        took: u64,
    ) -> Item {
        let whole_args = format!("{before}{}", after.unwrap_or_default());
        let (outcome, errno) = outcome(ret);
        let actor = self.threads[&tid].actor.clone();
        let pid = self.threads[&tid].pid;
        let mut key = self.context(tid, name, &whole_args, &outcome);
        // A failure whose errno does not print exactly as strace printed it is passed as text:
        // then no row may speak for it.
        if matches!(outcome, Outcome::Failed(_)) && errno.is_none() {
            key = "";
        }
        let (before_args, after_args) = match after {
            None => (one_arg(name, before), Args::new()),
            // strace's second half may begin with its own separator (clone's `, child_tidptr=`).
            Some(after) if after.starts_with([',', ' ']) => (one_arg(name, before), one_arg(name, after)),
            Some(after) => (
                one_arg(name, before.strip_suffix(", ").unwrap_or(before)),
                one_arg(name, after),
            ),
        };
        let call = Call {
            pid,
            tid,
            actor,
            name: name.to_string(),
            enter_t,
            called_t: exit_t.saturating_sub(took).max(enter_t),
            exit_t,
            before: before_args,
            after: after_args,
            ret: if errno.is_some() {
                Vec::new()
            } else {
                ret_pieces(name, ret)
            },
            errno: errno.map(|e| e as i32),
            note: None,
            note_key: key.to_string(),
            explained: None,
        };
        if after.is_some() {
            Item::Resumed(call)
        } else {
            Item::Whole(call)
        }
    }

    /// The thread `tid`, met for the first time: the command itself, or a child of a clone.
    fn thread(&mut self, tid: i32) {
        if self.threads.contains_key(&tid) {
            return;
        }
        let first = self.names.is_empty();
        let birth = self.births.remove(&tid).or_else(|| self.born_during_clone(tid));
        // The first thread is the command; one that nobody is known to have made is a thread
        // of its own, with an empty table, named by its number.
        let birth = birth.unwrap_or_else(|| Birth {
            pid: tid,
            program: if first { self.command.clone() } else { tid.to_string() },
            table: Rc::default(),
        });
        let actor = self.actor_name(&birth.program);
        self.threads.insert(
            tid,
            Thread {
                pid: birth.pid,
                program: birth.program,
                actor,
                table: birth.table,
            },
        );
    }

    /// A child that appears while its parent's clone is still unfinished: the one thread
    /// inside a clone is its parent (if several are, nobody can tell).
    fn born_during_clone(&mut self, tid: i32) -> Option<Birth> {
        let mut cloning = self
            .open
            .iter()
            .filter(|(_, open)| CLONES.contains(&open.name.as_str()));
        let (&parent, open) = cloning.next()?;
        if cloning.next().is_some() {
            return None;
        }
        let flags = open.before.clone();
        let birth = self.birth(parent, tid, &flags);
        Some(birth)
    }

    /// What the child `tid` of `parent` starts with, from the clone's flags: a thread shares
    /// its process's descriptor table (CLONE_FILES); a process gets a copy, every socket in
    /// it now shared with the parent.
    fn birth(&mut self, parent: i32, tid: i32, flags: &str) -> Birth {
        let parent = &self.threads[&parent];
        let table = if has_flag(flags, "CLONE_FILES") {
            Rc::clone(&parent.table)
        } else {
            parent.table.borrow_mut().forked();
            Rc::new(RefCell::new(parent.table.borrow().clone()))
        };
        Birth {
            pid: if has_flag(flags, "CLONE_THREAD") {
                parent.pid
            } else {
                tid
            },
            program: parent.program.clone(),
            table,
        }
    }

    fn actor_name(&mut self, program: &str) -> String {
        let count = self.names.entry(program.to_string()).or_insert(0);
        *count += 1;
        if *count == 1 {
            program.to_string()
        } else {
            format!("{program}#{count}")
        }
    }

    /// Feeds the descriptor table from a call that returned, and picks its notes row ("" for
    /// none): the lessons' choice, where it is true of this call.
    fn context(&mut self, tid: i32, name: &str, args: &str, outcome: &Outcome) -> &'static str {
        let (value, errno) = match outcome {
            Outcome::Returned(value) => (*value, None),
            Outcome::Failed(errno) => (None, *errno),
            Outcome::Unknown => return "",
        };
        if !TAUGHT.iter().any(|t| t.trim_start_matches('?') == name) {
            return "";
        }
        let arg = split_args(args);
        let fd = arg.first().and_then(|a| number(a)).map_or(-1, |n| n as i32);
        // Processes: the child's table, a new program's name.
        if CLONES.contains(&name) {
            if let Some(child) = value.filter(|&c| c > 0).map(|c| c as i32) {
                if !self.threads.contains_key(&child) {
                    let birth = self.birth(tid, child, args);
                    self.births.insert(child, birth);
                }
            }
            let fork_like = !["CLONE_VM", "CLONE_THREAD", "CLONE_FILES"]
                .iter()
                .any(|flag| has_flag(args, flag));
            return if name == "clone" && fork_like {
                "clone"
            } else {
                ANY_CALL
            };
        }
        if (name == "execve" || name == "execveat") && value == Some(0) {
            let path = arg.get(usize::from(name == "execveat")).copied().unwrap_or_default();
            self.exec(tid, path);
            return ANY_CALL;
        }

        let table = Rc::clone(&self.threads[&tid].table);
        let mut table = table.borrow_mut();
        let kind = table.kind(fd);
        let tcp = matches!(
            kind,
            Some(
                Kind::TcpFresh
                    | Kind::TcpConnecting
                    | Kind::TcpConnected
                    | Kind::TcpListener
                    | Kind::TcpShutWrite
                    | Kind::TcpDead
            )
        );
        let inet = tcp || kind == Some(Kind::Udp);
        let socket = kind.is_some();
        let ok = errno.is_none();
        let new_fd = value.filter(|_| ok).map(|v| v as i32);
        if let Some(errno) = errno {
            if MOVES_BYTES.contains(&name) || ON_A_SOCKET.contains(&name) {
                table.failed(fd, errno);
            }
        }
        let key = match name {
            // A read that returns 0: what that means depends on what the descriptor is.
            _ if READS.contains(&name) && value == Some(0) => match table.end_of_file(fd) {
                "eof" => ANY_CALL,
                key => key,
            },
            "socket" => {
                if let Some(new) = new_fd {
                    table.created(new, family(arg.first()), socket_type(arg.get(1)));
                }
                "socket"
            }
            "socketpair" => {
                if ok {
                    for new in numbers_in(arg.get(3).copied().unwrap_or_default()) {
                        table.created(new, family(arg.first()), socket_type(arg.get(1)));
                        table.connected(new, None);
                    }
                }
                "socketpair"
            }
            // Their rows speak of addresses and ports.
            "bind" if inet => "bind",
            "getsockname" if inet => "getsockname",
            "listen" => {
                if ok {
                    table.listening(fd);
                }
                if tcp { "listen" } else { ANY_CALL }
            }
            "accept" | "accept4" => {
                if let Some(new) = new_fd {
                    table.accepted(fd, new);
                }
                "accept4"
            }
            "connect" => {
                let key = match kind {
                    Some(Kind::Udp) if ok => "connect.udp",
                    _ if tcp => "connect",
                    _ => ANY_CALL,
                };
                table.connected(fd, errno);
                key
            }
            "getpeername" => "getpeername",
            "setsockopt" => "setsockopt",
            "getsockopt" => {
                if ok && arg.get(2) == Some(&"SO_ERROR") {
                    let pending = arg.get(3).is_some_and(|v| *v != "[0]");
                    table.pending_error(fd, i32::from(pending));
                }
                "getsockopt"
            }
            "shutdown" => {
                if ok {
                    table.shut_down(fd, arg.get(1) != Some(&"SHUT_RD"));
                }
                if tcp { "shutdown" } else { ANY_CALL }
            }
            "close" => table.closed(fd),
            "close_range" => {
                let cloexec = arg.get(2).is_some_and(|f| has_flag(f, "CLOSE_RANGE_CLOEXEC"));
                if ok && !cloexec {
                    let last = arg.get(1).and_then(|a| number(a)).unwrap_or(i64::MAX);
                    table.closed_range(fd, last.min(i64::from(i32::MAX)) as i32);
                }
                ANY_CALL
            }
            // send() and recv() arrive as sendto/recvfrom without an address; with one, the
            // rows speak of datagrams.
            "sendto" | "recvfrom" => match arg.get(4) {
                Some(&"NULL") if name == "sendto" => "send",
                Some(&"NULL") => "recv",
                _ if kind == Some(Kind::Udp) && name == "sendto" => "sendto",
                _ if kind == Some(Kind::Udp) => "recvfrom",
                _ => ANY_CALL,
            },
            "sendmsg" => {
                if ok {
                    for sent in scm_rights(args) {
                        table.sent(sent);
                    }
                }
                ANY_CALL
            }
            "read" if socket => "read",
            "write" if socket => "write",
            "dup" | "dup2" | "dup3" => {
                let new = match name {
                    "dup" => new_fd,
                    _ => arg.get(1).and_then(|a| number(a)).map(|n| n as i32).filter(|_| ok),
                };
                if let Some(new) = new {
                    table.duplicated(fd, new);
                }
                if socket { "dup" } else { ANY_CALL }
            }
            "fcntl" => match arg.get(1).copied().unwrap_or_default() {
                "F_DUPFD" | "F_DUPFD_CLOEXEC" => {
                    if let Some(new) = new_fd {
                        table.duplicated(fd, new);
                    }
                    if socket { "dup" } else { ANY_CALL }
                }
                "F_GETFL" | "F_SETFL" => "fcntl",
                _ => ANY_CALL,
            },
            "pselect6" => "pselect6",
            "poll" | "ppoll" => "poll",
            "epoll_create" | "epoll_create1" => "epoll_create1",
            "epoll_ctl" => "epoll_ctl",
            "epoll_wait" | "epoll_pwait" | "epoll_pwait2" => "epoll_wait",
            "prlimit64" if arg.get(1) == Some(&"RLIMIT_NOFILE") => "prlimit64",
            // A query (no new action) sets nothing.
            "rt_sigaction" if arg.get(1) != Some(&"NULL") => "rt_sigaction",
            // WNOHANG's 0 collected nobody.
            "wait4" if value.is_some_and(|v| v > 0) => "wait4",
            _ => ANY_CALL,
        };
        match errno {
            Some(errno) if !errno_row_true(key, name, errno, inet) => "",
            _ => key,
        }
    }

    /// A successful exec: the thread runs a new program. Its close-on-exec descriptors are
    /// gone and the table never knew which those were, so it starts empty: what the program
    /// kept gets the plain notes, never one that may be false.
    fn exec(&mut self, tid: i32, path: &str) {
        let program = path
            .trim_matches('"')
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let renamed = !program.is_empty() && self.threads[&tid].program != program;
        let actor = renamed.then(|| self.actor_name(&program));
        let thread = self.threads.get_mut(&tid).expect("a thread met before");
        thread.table = Rc::default();
        if let Some(actor) = actor {
            thread.program = program;
            thread.actor = actor;
        }
    }
}

/// Whether the notes row for `key` may speak for a call of `name` that failed with `errno`
/// (`inet`: on a TCP or UDP socket). The exact rows (connect's ECONNREFUSED, close's EBADF)
/// were chosen in context; the rows for any call only where that errno means what they say:
/// EAGAIN is "nothing to do right now" on a descriptor's I/O or accept (not on a futex or a
/// clone), ECONNRESET and ECONNREFUSED speak of RST and ICMP (TCP and UDP), EPIPE of a write,
/// EMFILE of a call that makes a descriptor.
fn errno_row_true(key: &str, name: &str, errno: Errno, inet: bool) -> bool {
    let Some(row) = notes::row(key, Some(errno)) else {
        return true;
    };
    if row.syscall != ANY_CALL {
        return true;
    }
    let io = MOVES_BYTES.contains(&name);
    match errno {
        Errno::EINTR => true,
        Errno::EAGAIN => io || name == "accept" || name == "accept4",
        Errno::EPIPE => io,
        Errno::ECONNRESET | Errno::ECONNREFUSED => inet && (io || ON_A_SOCKET.contains(&name)),
        Errno::ENOTCONN => io || ON_A_SOCKET.contains(&name),
        Errno::EMFILE => MAKES_A_DESCRIPTOR.contains(&name),
        _ => false,
    }
}

/// `PID TIME REST`: how `strace -f -ttt` begins a line. The time is CLOCK_REALTIME in ns.
fn prefix(line: &str) -> Option<(i32, u64, &str)> {
    let (pid, rest) = line.split_once(' ')?;
    let (stamp, rest) = rest.trim_start_matches(' ').split_once(' ')?;
    Some((pid.parse().ok()?, nanoseconds(stamp)?, rest))
}

/// `-T`'s ` <0.000013>` at the end of a line that returned: the line without it, and the
/// time spent in the call (ns; 0 when there is none).
fn syscall_time(rest: &str) -> (&str, u64) {
    let parsed = rest
        .strip_suffix('>')
        .and_then(|r| r.rsplit_once(" <"))
        .and_then(|(line, time)| Some((line, nanoseconds(time)?)));
    parsed.unwrap_or((rest, 0))
}

/// `1796155887.807147` (seconds) in nanoseconds.
fn nanoseconds(seconds: &str) -> Option<u64> {
    let (whole, fraction) = seconds.split_once('.')?;
    let digits = fraction.len().min(9);
    let fraction: u64 = fraction.get(..digits)?.parse().ok()?;
    Some(whole.parse::<u64>().ok()? * 1_000_000_000 + fraction * 10u64.pow(9 - digits as u32))
}

/// A line of strace's, taken apart.
#[derive(Debug, PartialEq, Eq)]
enum Shape<'a> {
    /// `name(args) = ret`
    Whole { name: &'a str, args: &'a str, ret: &'a str },
    /// `name(args <unfinished ...>`
    Unfinished { name: &'a str, args: &'a str },
    /// `<... name resumed>args) = ret`
    Resumed { name: &'a str, args: &'a str, ret: &'a str },
    /// `--- SIGCHLD {…} ---`, `+++ exited with 0 +++`, or anything else, printed as it is.
    Mark(&'a str),
}

fn shape(rest: &str) -> Shape<'_> {
    if let Some(resumed) = rest.strip_prefix("<... ") {
        if let Some((name, tail)) = resumed.split_once(" resumed>") {
            if let Some((args, ret)) = close_and_result(tail) {
                return Shape::Resumed { name, args, ret };
            }
        }
    } else if let Some(head) = rest.strip_suffix(" <unfinished ...>") {
        if let Some((name, args)) = head.split_once('(').filter(|(name, _)| is_name(name)) {
            return Shape::Unfinished { name, args };
        }
    } else if let Some((name, tail)) = rest.split_once('(').filter(|(name, _)| is_name(name)) {
        if let Some((args, ret)) = close_and_result(tail) {
            return Shape::Whole { name, args, ret };
        }
    }
    Shape::Mark(rest)
}

fn is_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `args) = ret`, the opening parenthesis already read: the arguments and the result.
fn close_and_result(tail: &str) -> Option<(&str, &str)> {
    let close = top_level(tail, 1).find(|&(_, b)| b == b')').map(|(i, _)| i)?;
    let ret = tail[close + 1..].trim_start_matches(' ').strip_prefix("= ")?;
    Some((&tail[..close], ret))
}

/// The bytes of `text` outside quoted strings, with their positions, that sit at nesting
/// depth 0, counting from `depth` (a closing bracket that reaches 0 is included).
fn top_level(text: &str, depth: i32) -> impl Iterator<Item = (usize, u8)> + '_ {
    let mut depth = depth;
    let mut in_string = false;
    let mut escaped = false;
    text.bytes().enumerate().filter(move |&(_, b)| {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            return false;
        }
        match b {
            b'"' => in_string = true,
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                depth -= 1;
                return depth == 0;
            }
            _ => return depth == 0,
        }
        false
    })
}

/// The arguments strace printed, one string each: `3, {sa_family=…, …}, 16` is three.
fn split_args(args: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, b) in top_level(args, 0) {
        if b == b',' {
            out.push(args[start..i].trim());
            start = i + 1;
        }
    }
    let last = args[start..].trim();
    if !last.is_empty() {
        out.push(last);
    }
    out
}

/// A number as strace prints it: `3`, `-1`, `0x1f`.
fn number(text: &str) -> Option<i64> {
    let text = text.trim();
    match text.strip_prefix("0x") {
        Some(hex) => i64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// `[3, 4]`: socketpair's descriptors.
fn numbers_in(list: &str) -> Vec<i32> {
    list.trim_matches(['[', ']'])
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect()
}

/// The descriptors a sendmsg passed: `cmsg_type=SCM_RIGHTS, cmsg_data=[4, 5]`.
fn scm_rights(args: &str) -> Vec<i32> {
    args.split("SCM_RIGHTS, cmsg_data=")
        .skip(1)
        .flat_map(|rest| numbers_in(rest.split(']').next().unwrap_or_default()))
        .collect()
}

/// A flag as a whole word in strace's text: `CLONE_FILES` in `flags=CLONE_VM|CLONE_FILES|…`.
fn has_flag(text: &str, flag: &str) -> bool {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .any(|word| word == flag)
}

fn family(arg: Option<&&str>) -> i32 {
    match arg.copied() {
        Some("AF_INET") => libc::AF_INET,
        Some("AF_INET6") => libc::AF_INET6,
        Some("AF_UNIX" | "AF_LOCAL") => libc::AF_UNIX,
        _ => -1,
    }
}

fn socket_type(arg: Option<&&str>) -> i32 {
    match arg.and_then(|a| a.split('|').next()) {
        Some("SOCK_STREAM") => libc::SOCK_STREAM,
        Some("SOCK_DGRAM") => libc::SOCK_DGRAM,
        Some("SOCK_SEQPACKET") => libc::SOCK_SEQPACKET,
        _ => -1,
    }
}

/// How a call ended, and its errno when `render::error` prints it exactly as strace did
/// (then the trace prints it as it prints any error; otherwise strace's text goes as is).
fn outcome(ret: &str) -> (Outcome, Option<Errno>) {
    if let Some(error) = ret.strip_prefix("-1 ") {
        let name = error.split(' ').next().unwrap_or_default();
        let errno = (1..200).map(Errno::from_raw).find(|e| render::errno_name(*e) == name);
        let exact = errno.filter(|e| render::error(*e) == ret);
        return (Outcome::Failed(errno), exact);
    }
    if ret.starts_with('?') {
        return (Outcome::Unknown, None);
    }
    let value = ret.split(' ').next().and_then(number);
    (Outcome::Returned(value), None)
}

/// strace's arguments as one run of pieces (empty for none), pids typed when the call
/// takes one first.
fn one_arg(name: &str, text: &str) -> Args {
    if text.is_empty() {
        return Args::new();
    }
    let mut run = Vec::new();
    let mut rest = text;
    if PIDS.contains(&name) {
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        let alone = text[digits..].is_empty() || text[digits..].starts_with(',');
        if digits > 0 && alone {
            run.push(Piece::Pid(text[..digits].parse().unwrap_or_default()));
            rest = &text[digits..];
        }
    }
    run.extend(pieces(rest));
    Args::new().arg(run)
}

/// The result: a pid for the calls that return one, else its pieces.
fn ret_pieces(name: &str, ret: &str) -> Vec<Piece> {
    if PIDS.contains(&name) {
        if let Ok(pid) = ret.parse::<i32>() {
            if pid > 0 {
                return vec![Piece::Pid(pid)];
            }
        }
    }
    pieces(ret)
}

/// strace's text as pieces, the values that change from run to run typed (ports in
/// `htons(…)`, long hex addresses, pids after `si_pid=` and `parent_tid=[`, pselect6's time
/// left), so that the plain form can print them as words. Rendered verbatim, the pieces are
/// the text again, byte for byte: a typed value is kept only if it renders the same.
fn pieces(text: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut plain = 0;
    let mut i = 0;
    let mut in_string = false;
    while i < bytes.len() {
        if in_string {
            match bytes[i] {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if bytes[i] == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        let word_start = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        // (`get`: never inside a character, should strace ever print one that is not ASCII.)
        if let Some((label, piece, len)) = word_start.then(|| text.get(i..).and_then(typed)).flatten() {
            let mut again = String::new();
            render::piece(&piece, render::Form::Verbatim, &mut again);
            let value = i + label;
            if text.get(value..value + len) == Some(again.as_str()) {
                if plain < value {
                    out.push(Piece::text(text[plain..value].to_string()));
                }
                out.push(piece);
                i = value + len;
                plain = i;
                continue;
            }
        }
        i += 1;
    }
    if plain < text.len() {
        out.push(Piece::text(text[plain..].to_string()));
    }
    out
}

/// A value that changes from run to run near the start of `text`: the length of the label
/// before it (which stays text), the value, and its length.
fn typed(text: &str) -> Option<(usize, Piece, usize)> {
    let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
    for label in ["htons(", "si_pid=", "parent_tid=["] {
        if let Some(rest) = text.strip_prefix(label) {
            let n = digits(rest);
            let value: i64 = rest[..n].parse().ok()?;
            let piece = if label == "htons(" {
                Piece::Port(u16::try_from(value).ok()?)
            } else {
                Piece::Pid(i32::try_from(value).ok()?)
            };
            return Some((label.len(), piece, n));
        }
    }
    if let Some(hex) = text.strip_prefix("0x") {
        let n = hex.bytes().take_while(u8::is_ascii_hexdigit).count();
        if n >= 8 && !hex[n..].starts_with(|c: char| c.is_ascii_alphanumeric()) {
            let address = usize::from_str_radix(&hex[..n], 16).ok()?;
            return Some((0, Piece::Pointer(Some(address)), 2 + n));
        }
        return None;
    }
    // pselect6's result: `= 1 (in [3], left {tv_sec=0, tv_nsec=999993097})`.
    let rest = text.strip_prefix("left {tv_sec=")?;
    let n = digits(rest);
    let secs = rest[..n].parse().ok()?;
    let after = rest[n..].strip_prefix(", tv_nsec=")?;
    let m = digits(after);
    let nanos = after[..m].parse().ok()?;
    let len = "{tv_sec=".len() + n + ", tv_nsec=".len() + m + 1;
    Some(("left ".len(), Piece::TimeLeft { secs, nanos }, len))
}

#[cfg(test)]
mod tests {
    use super::super::order::Order;
    use super::super::render::Form;
    use super::*;

    /// Feeds strace lines (without the `PID TIME ` prefix: `pid|line`) through a decoder and
    /// the ordering's notes; each printed line with the note under it, if any.
    fn explained(lines: &[&str]) -> Vec<(String, Option<String>)> {
        let mut decoder = Decoder::new("/usr/bin/python3");
        let mut order = Order::new();
        let mut out = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let (pid, text) = match line.split_once('|') {
                Some((pid, text)) if pid.bytes().all(|b| b.is_ascii_digit()) => (pid, text),
                _ => ("100", *line),
            };
            let full = format!("{pid} 1700000000.{:06} {text}", i + 1);
            for item in decoder
                .line(&full, None)
                .into_iter()
                .flat_map(|item| order.shaped(item))
            {
                match item {
                    Item::Whole(call) => out.push((format!("{} {}", call.actor, call.line(Form::Verbatim)), call.note)),
                    Item::Resumed(call) => {
                        out.push((format!("{} {}", call.actor, call.resumed(Form::Verbatim)), call.note))
                    }
                    Item::Unfinished { actor, name, .. } => out.push((format!("{actor} {name} unfinished"), None)),
                    Item::Mark { actor, text, .. } => {
                        out.push((format!("{actor} {}", render::pieces(&text, Form::Verbatim)), None))
                    }
                    _ => {}
                }
            }
        }
        out
    }

    fn note_of<'a>(out: &'a [(String, Option<String>)], line: &str) -> Option<&'a str> {
        out.iter()
            .find(|(l, _)| l.contains(line))
            .unwrap_or_else(|| panic!("no line {line:?} in {out:#?}"))
            .1
            .as_deref()
    }

    fn row(key: &str) -> Option<&'static str> {
        notes::lookup(key, None)
    }

    #[test]
    fn lines_are_taken_apart_as_strace_wrote_them() {
        assert_eq!(
            shape(r#"write(1, ") = 5", 5) = 5"#),
            Shape::Whole {
                name: "write",
                args: r#"1, ") = 5", 5"#,
                ret: "5"
            }
        );
        assert_eq!(
            shape("accept4(3, "),
            Shape::Mark("accept4(3, "),
            "a partial line is not a call yet"
        );
        assert_eq!(
            shape("accept4(3,  <unfinished ...>"),
            Shape::Unfinished {
                name: "accept4",
                args: "3, "
            }
        );
        assert_eq!(
            shape("<... accept4 resumed>{sa_family=AF_INET}, [16], SOCK_CLOEXEC) = 4"),
            Shape::Resumed {
                name: "accept4",
                args: "{sa_family=AF_INET}, [16], SOCK_CLOEXEC",
                ret: "4"
            }
        );
        assert_eq!(
            shape("<... read resumed> <unfinished ...>) = ?"),
            Shape::Resumed {
                name: "read",
                args: " <unfinished ...>",
                ret: "?"
            }
        );
        assert_eq!(shape("+++ exited with 0 +++"), Shape::Mark("+++ exited with 0 +++"));
        assert_eq!(syscall_time("close(3) = 0 <0.000013>"), ("close(3) = 0", 13_000));
        assert_eq!(syscall_time("x( <unfinished ...>"), ("x( <unfinished ...>", 0));
        assert_eq!(
            prefix("8456  1796156262.165726 read(0, "),
            Some((8456, 1_796_156_262_165_726_000, "read(0, "))
        );
        assert_eq!(
            split_args(r#"3, {a=1, b=[2, 3]}, "x, y", NULL"#),
            ["3", "{a=1, b=[2, 3]}", r#""x, y""#, "NULL"]
        );
    }

    #[test]
    fn pieces_print_strace_text_back_and_name_what_changes() {
        assert_eq!(
            render::pieces(&pieces("é, 0x7ffd9a1c65a0"), Form::Normalised),
            "é, 0xADDR",
            "never cut inside a character"
        );
        let text = r#"3, {sa_family=AF_INET, sin_port=htons(40123), sin_addr=inet_addr("127.0.0.1")}, 0x7ffd9a1c65a0, "htons(1) 0x7ffd9a1c65a0", si_pid=4242, 0x1"#;
        let run = pieces(text);
        assert_eq!(render::pieces(&run, Form::Verbatim), text);
        assert_eq!(
            render::pieces(&run, Form::Normalised),
            r#"3, {sa_family=AF_INET, sin_port=htons(PORT), sin_addr=inet_addr("127.0.0.1")}, 0xADDR, "htons(1) 0x7ffd9a1c65a0", si_pid=PID, 0x1"#
        );
        let left = "1 (in [3], left {tv_sec=0, tv_nsec=999993097})";
        assert_eq!(render::pieces(&pieces(left), Form::Verbatim), left);
        assert_eq!(render::pieces(&pieces(left), Form::Normalised), "1 (in [3], left {…})");
    }

    #[test]
    fn split_calls_join_back_into_the_line_strace_prints_whole() {
        let out = explained(&[
            "100|accept4(3,  <unfinished ...>",
            "101|close(9) = 0",
            "100|<... accept4 resumed>{sa_family=AF_INET, sin_port=htons(1), sin_addr=inet_addr(\"127.0.0.1\")}, [16], SOCK_CLOEXEC) = 4",
            "100|clone(child_stack=NULL, flags=SIGCHLD <unfinished ...>",
            "101|close(8) = 0",
            "100|<... clone resumed>, child_tidptr=0x7f0000000310) = 102",
        ]);
        assert_eq!(
            out[2].0,
            "python3 <... accept4 resumed>{sa_family=AF_INET, sin_port=htons(1), sin_addr=inet_addr(\"127.0.0.1\")}, [16], SOCK_CLOEXEC) = 4"
        );
        assert_eq!(
            out[5].0,
            format!(
                "python3 {}",
                render::strace_line("<... clone resumed>, child_tidptr=0x7f0000000310)", "102")
            )
        );
        let mut decoder = Decoder::new("x");
        decoder.line(
            "100 1.000001 clone(child_stack=NULL, flags=SIGCHLD <unfinished ...>",
            None,
        );
        let Some(Item::Resumed(call)) = decoder
            .line(
                "100 1.000002 <... clone resumed>, child_tidptr=0x7f0000000310) = 102",
                None,
            )
            .pop()
        else {
            panic!("a resumed half")
        };
        assert_eq!(
            call.line(Form::Verbatim),
            "clone(child_stack=NULL, flags=SIGCHLD, child_tidptr=0x7f0000000310) = 102"
        );
    }

    #[test]
    fn notes_are_the_lessons_and_true_in_context() {
        let out = explained(&[
            "openat(AT_FDCWD, \"/etc/hosts\", O_RDONLY|O_CLOEXEC) = 3",
            "read(3, \"127.0.0.1 localhost\\n\", 4096) = 20",
            "read(3, \"\", 4096) = 0",
            "close(3) = 0",
            "socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC, IPPROTO_IP) = 3",
            "connect(3, {sa_family=AF_INET, sin_port=htons(7), sin_addr=inet_addr(\"127.0.0.1\")}, 16) = 0",
            "sendto(3, \"hi\", 2, 0, NULL, 0) = 2",
            "recvfrom(3, 0x7ffd00000000, 1024, 0, NULL, NULL) = -1 ECONNRESET (Connection reset by peer)",
            "close(3) = 0",
            "socket(AF_UNIX, SOCK_STREAM|SOCK_CLOEXEC, 0) = 3",
            "connect(3, {sa_family=AF_UNIX, sun_path=\"/run/x\"}, 110) = -1 ECONNREFUSED (Connection refused)",
            "bind(3, {sa_family=AF_UNIX, sun_path=\"/run/x\"}, 110) = 0",
            "close(3) = 0",
            "socketpair(AF_UNIX, SOCK_STREAM|SOCK_CLOEXEC, 0, [3, 5]) = 0",
            "close(3) = 0",
            "futex(0x7f0000000000, FUTEX_WAIT_PRIVATE, 2, NULL) = -1 EAGAIN (Resource temporarily unavailable)",
            "socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC, IPPROTO_IP) = 4",
            "listen(4, 5) = 0",
            "accept4(4, 0x7ffd00000000, [16], SOCK_CLOEXEC|SOCK_NONBLOCK) = -1 EAGAIN (Resource temporarily unavailable)",
            "close(4) = 0",
            "getpid() = 100",
        ]);
        assert_eq!(note_of(&out, "openat("), None, "a call the lessons do not teach");
        assert_eq!(note_of(&out, "read(3, \"127"), None, "the read row speaks of sockets");
        assert_eq!(note_of(&out, "read(3, \"\""), None, "a file's end is not a peer's FIN");
        assert_eq!(note_of(&out, "close(3)"), row("close"));
        assert_eq!(note_of(&out, "socket(AF_INET"), row("socket"));
        assert_eq!(note_of(&out, "connect(3, {sa_family=AF_INET"), row("connect"));
        assert_eq!(note_of(&out, "sendto("), row("send"));
        assert_eq!(
            note_of(&out, "recvfrom("),
            notes::lookup("recv", Some(Errno::ECONNRESET)),
            "the errno row, under the call that met it"
        );
        let closes: Vec<_> = out.iter().filter(|(l, _)| l.contains("close(")).collect();
        assert_eq!(closes[1].1.as_deref(), row("close.tcp-dead"), "after a reset, no FIN");
        assert_eq!(
            closes[2].1.as_deref(),
            row("close.unix-unconnected"),
            "its connect failed: no peer to read an end of file"
        );
        assert_eq!(closes[3].1.as_deref(), row("close.unix"), "AF_UNIX has no FIN");
        assert_eq!(
            closes[4].1.as_deref(),
            row("close.listener"),
            "a listener resets its queue"
        );
        assert_eq!(
            note_of(&out, "connect(3, {sa_family=AF_UNIX"),
            None,
            "no SYN, no RST on AF_UNIX"
        );
        assert_eq!(
            note_of(&out, "bind(3, {sa_family=AF_UNIX"),
            None,
            "a path, not an address and port"
        );
        assert_eq!(note_of(&out, "futex("), None, "a futex's EAGAIN is not a descriptor's");
        assert_eq!(note_of(&out, "listen("), row("listen"));
        assert_eq!(note_of(&out, "accept4("), notes::lookup("accept4", Some(Errno::EAGAIN)));
        assert_eq!(note_of(&out, "getpid()"), None);
    }

    #[test]
    fn threads_share_their_process_table_and_forks_copy_it() {
        let clone3 = "clone3({flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM, \
                      child_tid=0x7f0000000990, parent_tid=0x7f0000000990, exit_signal=0} => {parent_tid=[101]}, 88) = 101";
        let out = explained(&[
            "100|socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC, IPPROTO_IP) = 3",
            "100|connect(3, {sa_family=AF_INET, sin_port=htons(7), sin_addr=inet_addr(\"127.0.0.1\")}, 16) = 0",
            &format!("100|{clone3}"),
            "101|close(3) = 0",
            "100|socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC, IPPROTO_IP) = 3",
            "100|connect(3, {sa_family=AF_INET, sin_port=htons(7), sin_addr=inet_addr(\"127.0.0.1\")}, 16) = 0",
            "100|clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, child_tidptr=0x7f0000000310) = 102",
            "100|close(3) = 0",
            "102|close(3) = 0",
            "102|+++ exited with 0 +++",
        ]);
        assert_eq!(
            out[3].0.split(' ').next(),
            Some("python3#2"),
            "a thread is named after its program"
        );
        assert_eq!(
            out[3].1.as_deref(),
            row("close.tcp"),
            "the thread closed the process's only descriptor"
        );
        assert_eq!(note_of(&out, "clone(child_stack"), row("clone"));
        assert_eq!(out[7].1.as_deref(), row("close.shared"), "the child holds a copy");
        assert_eq!(out[8].0.split(' ').next(), Some("python3#3"));
        assert_eq!(out[9].0, "python3#3 +++ exited with 0 +++");
    }

    #[test]
    fn a_child_that_speaks_before_its_fork_returns_is_still_its_parents() {
        let out = explained(&[
            "100|socket(AF_UNIX, SOCK_STREAM|SOCK_CLOEXEC, 0) = 3",
            "100|clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD <unfinished ...>",
            "102|close(3) = 0",
            "100|<... clone resumed>, child_tidptr=0x7f0000000310) = 102",
            "102|execve(\"/bin/nc\", [\"nc\"], 0x7ffd00000000 /* 3 vars */) = 0",
            "102|socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC, IPPROTO_TCP) = 3",
        ]);
        assert_eq!(out[2].0.split(' ').next(), Some("python3#2"));
        assert_eq!(out[2].1.as_deref(), row("close.shared"));
        assert_eq!(out[5].0.split(' ').next(), Some("nc"), "an exec renames the process");
    }
}
