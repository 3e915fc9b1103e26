//! The lesson table, and the command line every lesson shares.
//!
//! The table is the one place lessons are registered: `make lessons` prints it, and
//! `tests/programs/lessons.rs` checks it against the disk: every `lessons/NN-slug/` folder is in it and
//! holds exactly its files (README.md, main.rs, expected.trace, an expected.PART.trace for each
//! part and the Python programs named here), Cargo.toml's `[[example]]` list is exactly these
//! lessons, and the project README's lesson table says what the table says.
//!
//! Stage machinery a demo shares lives beside it, every call of it kept out of the trace:
//! - [`stage`]: waiting for a demo's processes, private lines to forked children, /proc
//!   readers, a keyboard typing into a client;
//! - `scaling`: lesson 16's harness (its echo servers under load, its chart);
//! - [`Terminal`]: a client process whose stdin the demo types into, and whose screen it reads.

pub mod scaling;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Lessons import it from here, with the rest of their harness.
pub use crate::context::Context;
use crate::trace;
pub use terminal::Terminal;

pub mod stage;
mod terminal;

/// One row of the curriculum.
pub struct Lesson {
    pub number: u8,
    pub slug: &'static str,
    pub title: &'static str,
    /// What the learner sees happen, in a line.
    pub summary: &'static str,
    /// The Python programs in the lesson's folder (the seed's, ported, or PyMOTW-style), all run
    /// by `make python-N` (`lessons/run_python.py`); `tests/programs/python_programs.rs` checks their
    /// system calls under strace.
    pub python: &'static [&'static str],
    /// Parts beyond the demo, each run by name (`make lesson-15 ARGS=herd`), each with its own
    /// `expected.PART.trace`: what would make the demo's trace too long to read.
    pub parts: &'static [&'static str],
}

impl Lesson {
    /// `01-blocking-echo`: the folder under `lessons/`.
    pub fn folder(&self) -> String {
        format!("{:02}-{}", self.number, self.slug)
    }

    /// `lesson-01`: the cargo example that runs it.
    pub fn example(&self) -> String {
        format!("lesson-{:02}", self.number)
    }

    /// The file holding the demo's trace (`expected.trace`), or a part's (`expected.herd.trace`).
    pub fn expected_file(&self, part: Option<&str>) -> String {
        match part {
            None => "expected.trace".into(),
            Some(part) => format!("expected.{part}.trace"),
        }
    }
}

pub const LESSONS: &[Lesson] = &[
    Lesson {
        number: 1,
        slug: "blocking-echo",
        title: "A blocking echo server",
        summary: "socket, bind, listen, accept (blocks!), recv, send, close; a client's connect",
        python: &["seed_server.py", "seed_client.py"],
        parts: &[],
    },
    Lesson {
        number: 2,
        slug: "udp-echo",
        title: "UDP: datagrams, no connections",
        summary: "recvfrom/sendto, message boundaries kept, connect() on UDP, ECONNREFUSED",
        python: &["seed_server.py", "seed_client.py", "early_client.py"],
        parts: &[],
    },
    Lesson {
        number: 3,
        slug: "addresses",
        title: "Addresses, ports and byte order",
        summary: "getaddrinfo, sockaddr_in vs sockaddr_in6, htons, port 0 and getsockname, IPV6_V6ONLY",
        python: &["addresses.py"],
        parts: &[],
    },
    Lesson {
        number: 4,
        slug: "socket-options",
        title: "Socket options",
        summary: "EADDRINUSE from TIME_WAIT and SO_REUSEADDR, buffer sizes doubled, timeouts, linger",
        python: &["seed_server.py", "seed_client.py", "options.py"],
        parts: &[],
    },
    Lesson {
        number: 5,
        slug: "byte-streams",
        title: "TCP is a byte stream",
        summary: "one send is not one recv, a short send, line framing, EOF, shutdown(SHUT_WR)",
        python: &["tsTserv.py", "tsTclnt.py", "sendall.py"],
        parts: &[],
    },
    Lesson {
        number: 6,
        slug: "broken-pipes",
        title: "Broken pipes and resets",
        summary: "SIGPIPE kills a child, EPIPE with MSG_NOSIGNAL, ECONNRESET after SO_LINGER 0",
        python: &["seed_server.py", "seed_client.py"],
        parts: &[],
    },
    Lesson {
        number: 7,
        slug: "concurrency-models",
        title: "Iterative, forking, threaded and prefork servers",
        summary: "a second client waits; fork and thread per connection; a prefork pool and the herd counted",
        python: &["tsTservSS.py", "tsTclntSS.py", "seed_server.py", "seed_client.py"],
        parts: &["prefork", "herd", "backlog"],
    },
    Lesson {
        number: 8,
        slug: "nonblocking",
        title: "Non-blocking sockets",
        summary: "O_NONBLOCK, EAGAIN, what busy-polling burns, non-blocking connect and SO_ERROR",
        python: &["nonblocking.py"],
        parts: &[],
    },
    Lesson {
        number: 9,
        slug: "select-basics",
        title: "select(2)",
        summary: "select on stdin and on sockets with a timeout; nfds, sets and timeout rewritten; pselect6",
        python: &["select_stdin.py", "select_sockets.py", "greeter.py"],
        parts: &[],
    },
    Lesson {
        number: 10,
        slug: "select-echo-server",
        title: "An echo server on select",
        summary: "many clients, one thread: a readable listener means accept won't block; EOF removes a client",
        python: &["select_echo_server.py", "select_echo_client.py"],
        parts: &[],
    },
    Lesson {
        number: 11,
        slug: "select-chat-room",
        title: "The select chat room",
        summary: "the seed's chat room done right: per-client output queues, write interest only while output waits",
        python: &["seed_server.py", "seed_client.py"],
        parts: &[],
    },
    Lesson {
        number: 12,
        slug: "fd-setsize",
        title: "The FD_SETSIZE wall",
        summary: "fd 1024 has no bit in glibc's fd_set (nix panics, FD_SET aborts) but the kernel's pselect6 takes 1500; poll and epoll fine",
        python: &["fd_wall.py"],
        parts: &[],
    },
    Lesson {
        number: 13,
        slug: "poll",
        title: "poll(2)",
        summary: "the pollfd array, events vs revents, POLLHUP/POLLERR/POLLNVAL made to happen; the room on poll",
        python: &["poll_echo_server.py", "poll_client.py"],
        parts: &[],
    },
    Lesson {
        number: 14,
        slug: "epoll-level-triggered",
        title: "epoll, level-triggered",
        summary: "epoll_create1/ctl/wait, interest list vs ready list, reported again while data remains",
        python: &["epoll_server.py", "epoll_client.py"],
        parts: &[],
    },
    Lesson {
        number: 15,
        slug: "epoll-edge-triggered",
        title: "epoll, edge-triggered",
        summary: "reported once: drain to EAGAIN or starve; EPOLLONESHOT; EPOLLEXCLUSIVE and the herd",
        python: &["epoll_et_server.py", "epoll_et_client.py"],
        parts: &["herd"],
    },
    Lesson {
        number: 16,
        slug: "scaling",
        title: "Scaling: select, poll and epoll against idle descriptors",
        summary: "one wait's cost at N = 10 to 10,000 idle descriptors, measured and drawn; echo loops with idle clients",
        python: &["wait_cost.py"],
        parts: &["echo"],
    },
    Lesson {
        number: 17,
        slug: "reactor",
        title: "The reactor",
        summary: "handlers registered per descriptor, timers, one loop dispatching; an echo server and an idle timer on it",
        python: &["selectors_echo_server.py", "selectors_echo_client.py"],
        parts: &[],
    },
    Lesson {
        number: 18,
        slug: "unix-sockets",
        title: "Unix domain sockets",
        summary: "path and abstract names, socketpair, SO_PEERCRED, a listener hands connections to workers (SCM_RIGHTS)",
        python: &["unix_fd_passing.py"],
        parts: &[],
    },
    Lesson {
        number: 19,
        slug: "signals-in-the-loop",
        title: "Signals in the event loop",
        summary: "EINTR and SA_RESTART, the race pselect6's mask closes, the self-pipe trick, signalfd; a clean stop",
        python: &["signals_in_the_loop.py"],
        parts: &[],
    },
];

/// What the lesson was asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Server and scripted clients in one process, finishing by itself.
    Demo,
    /// Only the server, for `nc`, `socat` or Python to talk to.
    Server,
    /// Only a client, talking to a server the learner started.
    Client,
}

/// A lesson's command line: `[demo|server|client] [--port P] [--host ADDR] [--trace MODE]`.
#[derive(Clone, Debug)]
pub struct Args {
    pub role: Role,
    /// 0 in the demo unless given: the kernel picks a free port.
    pub port: u16,
    pub host: IpAddr,
    /// Words the lesson handles itself (for example a message for the client to send).
    pub rest: Vec<String>,
}

impl Args {
    /// The address to bind or connect to.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }
}

pub const USAGE: &str =
    "usage: [demo|server|client] [--port P] [--host ADDR] [--trace human|json|plain|off] [--actor NAME] [words...]";

/// Starts this same lesson program again as a separate process, in `role` with `words`,
/// named `actor` in the trace: how a demo runs its clients, as a learner would in a second
/// terminal. The child inherits stdout and the trace mode: in a demo, its events go to the
/// demo's collector with everyone else's. Starting it is plumbing, not the lesson (staged).
///
/// # Errors
/// When the program cannot be started.
pub fn spawn_process(actor: &str, role: &str, port: u16, words: &[&str]) -> std::io::Result<std::process::Child> {
    let program = std::env::current_exe()?;
    let mut command = std::process::Command::new(program);
    command
        .arg(role)
        .args(["--port", &port.to_string(), "--actor", actor])
        .args(words);
    command.env(trace::TRACE_ENV, trace::mode().name());
    trace::stage(|| command.spawn())
}

/// Runs [`spawn_process`] and waits for it; a child that fails fails the demo.
///
/// # Errors
/// When the child cannot start or does not exit with status 0.
pub fn run_process(actor: &str, role: &str, port: u16, words: &[&str]) -> Result<(), String> {
    let child = spawn_process(actor, role, port, words).map_err(|e| format!("{actor}: {e}"))?;
    wait_process(actor, child)
}

/// Waits for a process [`spawn_process`] started, named `actor` in the trace. Waiting is
/// plumbing (staged); a child that fails fails the demo.
///
/// # Errors
/// When the wait fails, or the child does not exit with status 0.
pub fn wait_process(actor: &str, mut child: std::process::Child) -> Result<(), String> {
    let status = trace::stage(|| child.wait()).map_err(|e| format!("{actor}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{actor} ended with {status}"))
    }
}

/// The rest of a forked child's life: named `actor` in the trace, it runs `body` and exits
/// (status 0, or 1 after one line on stderr), never returning into the code it shares with its
/// parent.
pub fn run_child(actor: impl Into<String>, body: impl FnOnce() -> Result<(), String>) -> ! {
    let actor = actor.into();
    trace::set_actor(actor.as_str());
    let code = match body() {
        Ok(()) => 0,
        Err(error) => {
            let program = std::env::args().next().unwrap_or_default();
            let program = program.rsplit('/').next().unwrap_or("lesson");
            eprintln!("{program}: {actor}: {error}");
            1
        }
    };
    crate::sys::exit(code)
}

/// Parses a lesson's arguments (without the program name).
///
/// # Errors
/// A one-line message naming the bad argument.
pub fn parse(words: &[String], default_port: u16) -> Result<Args, String> {
    let mut args = Args {
        role: Role::Demo,
        port: 0,
        host: IpAddr::V4(Ipv4Addr::LOCALHOST),
        rest: Vec::new(),
    };
    let mut port_given = false;
    let mut words = words.iter();
    while let Some(word) = words.next() {
        let mut value = |flag: &str| words.next().cloned().ok_or_else(|| format!("{flag} needs a value"));
        match word.as_str() {
            "demo" if args.rest.is_empty() => args.role = Role::Demo,
            "server" if args.rest.is_empty() => args.role = Role::Server,
            "client" if args.rest.is_empty() => args.role = Role::Client,
            "--port" | "-p" => {
                let text = value("--port")?;
                args.port = text
                    .parse()
                    .map_err(|_| format!("--port {text:?} is not a port number (0 to 65535)"))?;
                port_given = true;
            }
            "--host" => {
                let text = value("--host")?;
                args.host = text
                    .parse()
                    .map_err(|_| format!("--host {text:?} is not an IP address"))?;
            }
            "--actor" => trace::set_actor(value("--actor")?),
            "--trace" => {
                let text = value("--trace")?;
                trace::set_mode(text.parse()?);
            }
            "-h" | "--help" => return Err(USAGE.into()),
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}; {USAGE}")),
            other => args.rest.push(other.to_string()),
        }
    }
    if args.role != Role::Demo && !port_given {
        args.port = default_port;
    }
    Ok(args)
}

/// What a lesson's `run` returns: an error ends the program with a one-line message.
pub type Outcome = Result<(), Box<dyn std::error::Error>>;

/// A lesson's descriptor numbers are part of what it teaches ("3 is the lowest free one"), so
/// it starts as a program does from a fresh terminal: with 0, 1 and 2 only. Shells, editors and
/// CI runners sometimes leak others (seen here: 10 and 251), which would shift the numbers.
fn close_inherited_descriptors() {
    // SAFETY: at the start of main nothing in this program owns a descriptor above 2; the ones
    // closed here were inherited by accident. close_range(2) takes plain integers.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
}

/// A lesson's `fn main`: parse the arguments, run, and turn an error into one line on
/// stderr with exit status 1 (2 for a bad argument), never a panic.
///
/// A demo with tracing on does not run here: this process becomes the demo's collector
/// (`trace::collect`), which runs the program again, gathers the events of every process of
/// the demo, and prints them in the order they happened.
pub fn main(default_port: u16, run: impl FnOnce(Args) -> Outcome) {
    main_then(default_port, run, || {});
}

/// [`main`], and then, once a demo that ended well has had its trace printed for a person
/// (human mode), `after` in the process that printed it: what a trace cannot hold goes there
/// (lesson 16 draws its chart). json and plain print the trace alone.
pub fn main_then(default_port: u16, run: impl FnOnce(Args) -> Outcome, after: impl FnOnce()) {
    close_inherited_descriptors();
    let words: Vec<String> = std::env::args().skip(1).collect();
    let program = std::env::args().next().unwrap_or_default();
    let program = program.rsplit('/').next().unwrap_or("lesson").to_string();
    let args = match parse(&words, default_port) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{program}: {message}");
            std::process::exit(2);
        }
    };
    if args.role == Role::Demo && trace::mode().prints() {
        let status = trace::collect(trace::mode());
        if status == 0 && trace::mode() == trace::Mode::Human {
            after();
        }
        std::process::exit(status);
    }
    let outcome = run(args);
    trace::finish();
    if let Err(error) = outcome {
        eprintln!("{program}: {error}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_roles_ports_and_rest() {
        let args = parse(&words("server --port 7000"), 9000).unwrap();
        assert_eq!((args.role, args.port), (Role::Server, 7000));
        let args = parse(&words("client hello there"), 9000).unwrap();
        assert_eq!((args.role, args.port, args.rest.len()), (Role::Client, 9000, 2));
        assert_eq!(parse(&[], 9000).unwrap().port, 0);
    }

    #[test]
    fn bad_arguments_say_what_is_wrong() {
        assert!(
            parse(&words("server --port seventy"), 1)
                .unwrap_err()
                .contains("\"seventy\" is not a port")
        );
        assert!(
            parse(&words("server --port 70000"), 1)
                .unwrap_err()
                .contains("not a port")
        );
        assert!(parse(&words("--port"), 1).unwrap_err().contains("needs a value"));
        assert!(
            parse(&words("--bogus"), 1)
                .unwrap_err()
                .contains("unknown option --bogus")
        );
    }
}
