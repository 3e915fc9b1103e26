//! `socklab load`: the load generator `make bench` drives against the echo server and the room.
//!
//! - `pingpong`: C connections each send a message and wait for all of it to come back, over
//!   and over (optionally with many idle connections held open beside them);
//! - `bulk`: one connection, large writes from one thread, the echo read by another;
//! - `chat`: N clients in the chat room each say M lines, which must reach all the others.
//!
//! It is built not to be what limits the server: one thread and one epoll instance for any
//! number of connections (bulk adds one writer thread), buffers allocated once before the
//! measured part starts, nothing allocated per message, and the clock read once per message.
//! And every byte is checked: a reply that differs from what was sent, a byte lost or
//! reordered, a connection the server closed, a line that reached a client twice or out of
//! order is a failure, printed on stderr and in the report, and the exit status is 1.
//!
//! Each run reports what it measured (`--json`: one JSON object on a line) and, with
//! `--server-pid`, how much CPU the server and the load each used while it ran.

mod bulk;
mod chat;
mod connect;
pub mod json;
mod measure;
pub mod pingpong;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use nix::sys::epoll::EpollTimeout;
use nix::sys::resource::{Resource, getrlimit, setrlimit};

use json::Json;
use measure::CpuUse;

const HELP: &str = "usage:
  socklab load pingpong [--port P] [--conns C] [--idle N] [--size BYTES] [--secs S] [--warmup S]
                        C connections (1) each send a message of BYTES (64) and wait for all of it
                        to come back, again and again, for S seconds (2) after S of warm-up (0.2),
                        with N idle connections (0) held open beside them
  socklab load bulk     [--port P] [--chunk BYTES] [--secs S]
                        one connection: writes of BYTES (65536) for S seconds (2) while another
                        thread reads the echo and checks every byte
  socklab load chat     [--port P] [--clients N] [--lines M] [--window W] [--timeout S]
                        N clients (50) in the chat room each say M lines (100), each client at most
                        W lines ahead of their delivery (line k goes once (k-W) x (N-1) deliveries
                        of its lines arrived; 0: no limit); each line must reach the N-1 others,
                        in each sender's order
  every load also takes --host ADDR (127.0.0.1), --server-pid PID (to report the server's CPU
  use) and --json (one JSON object instead of a sentence); the port is the echo server's
  (33334) or the room's (33333) unless given";

/// Runs `socklab load WORDS...`; returns the exit status: 0 if every check passed, 1 if one
/// failed or the load could not run, 2 for a bad command line.
pub fn main(words: &[String]) -> i32 {
    let (kind, options) = match parse(words) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("socklab load: {message}\n{HELP}");
            return 2;
        }
    };
    raise_descriptor_limit();
    let outcome = match kind.as_str() {
        "pingpong" => options.ping_pong().and_then(|load| pingpong::run(&load)),
        "bulk" => options.bulk().and_then(|load| bulk::run(&load)),
        _ => options.chat().and_then(|load| chat::run(&load)),
    };
    match outcome {
        Ok(report) => {
            for failure in report.failures.list() {
                eprintln!("socklab load: FAILED: {failure}");
            }
            if options.json {
                println!("{}", report.to_json());
            } else {
                println!("{}", report.summary);
            }
            i32::from(!report.failures.is_empty())
        }
        Err(message) => {
            eprintln!("socklab load: FAILED: {message}");
            1
        }
    }
}

/// Idle connections need descriptors: the soft limit goes up to the hard one (20,000 here).
fn raise_descriptor_limit() {
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// The command line: which load, and its `--flag value` pairs.
struct Options {
    host: IpAddr,
    port: Option<u16>,
    values: Vec<(String, String)>,
    server_pid: Option<i32>,
    json: bool,
}

fn parse(words: &[String]) -> Result<(String, Options), String> {
    let (kind, flags) = words.split_first().ok_or("which load? pingpong, bulk or chat")?;
    let allowed: &[&str] = match kind.as_str() {
        "pingpong" => &["--conns", "--idle", "--size", "--secs", "--warmup"],
        "bulk" => &["--chunk", "--secs"],
        "chat" => &["--clients", "--lines", "--window", "--timeout"],
        other => return Err(format!("no load called {other:?}; choose pingpong, bulk or chat")),
    };
    let mut options = Options {
        host: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: None,
        values: Vec::new(),
        server_pid: None,
        json: false,
    };
    let mut flags = flags.iter();
    while let Some(flag) = flags.next() {
        if flag == "--json" {
            options.json = true;
            continue;
        }
        let value = flags.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |what: &str| format!("{flag} {value:?} is not {what}");
        match flag.as_str() {
            "--host" => options.host = value.parse().map_err(|_| bad("an IP address"))?,
            "--port" => options.port = Some(value.parse().map_err(|_| bad("a port number"))?),
            "--server-pid" => options.server_pid = Some(value.parse().map_err(|_| bad("a process id"))?),
            _ if allowed.contains(&flag.as_str()) => options.values.push((flag.clone(), value.clone())),
            _ => return Err(format!("{kind} takes no {flag}")),
        }
    }
    Ok((kind.clone(), options))
}

impl Options {
    fn server(&self, default_port: u16) -> SocketAddr {
        SocketAddr::new(self.host, self.port.unwrap_or(default_port))
    }

    fn count(&self, flag: &str, default: usize) -> Result<usize, String> {
        match self.values.iter().rev().find(|(name, _)| name == flag) {
            Some((_, value)) => value
                .parse()
                .map_err(|_| format!("{flag} {value:?} is not a whole number")),
            None => Ok(default),
        }
    }

    fn seconds(&self, flag: &str, default: f64) -> Result<Duration, String> {
        let secs = match self.values.iter().rev().find(|(name, _)| name == flag) {
            Some((_, value)) => value
                .parse()
                .map_err(|_| format!("{flag} {value:?} is not a number of seconds"))?,
            None => default,
        };
        Duration::try_from_secs_f64(secs).map_err(|_| format!("{flag} {secs} is not a number of seconds"))
    }

    fn ping_pong(&self) -> Result<pingpong::PingPong, String> {
        Ok(pingpong::PingPong {
            server: self.server(crate::serve::echo::DEFAULT_PORT),
            conns: self.count("--conns", 1)?,
            idle: self.count("--idle", 0)?,
            size: self.count("--size", 64)?,
            warmup: self.seconds("--warmup", 0.2)?,
            secs: self.seconds("--secs", 2.0)?,
            server_pid: self.server_pid,
        })
    }

    fn bulk(&self) -> Result<bulk::Bulk, String> {
        Ok(bulk::Bulk {
            server: self.server(crate::serve::echo::DEFAULT_PORT),
            chunk: self.count("--chunk", 64 * 1024)?,
            secs: self.seconds("--secs", 2.0)?,
            server_pid: self.server_pid,
        })
    }

    fn chat(&self) -> Result<chat::Chat, String> {
        Ok(chat::Chat {
            server: self.server(crate::serve::DEFAULT_PORT),
            clients: self.count("--clients", 50)?,
            lines: self.count("--lines", 100)?,
            window: self.count("--window", 0)?,
            timeout: self.seconds("--timeout", 60.0)?,
            server_pid: self.server_pid,
        })
    }
}

/// The correctness checks that failed in a run. The first few are kept word for word; past
/// that only counted, so a run that goes wrong everywhere cannot flood the screen or memory.
#[derive(Default)]
pub struct Failures {
    kept: Vec<String>,
    more: u64,
}

impl Failures {
    const KEPT: usize = 10;

    pub fn add(&mut self, failure: String) {
        if self.kept.len() < Failures::KEPT {
            self.kept.push(failure);
        } else {
            self.more += 1;
        }
    }

    /// Adds `failure` in front: the one that sums up the others.
    pub fn lead(&mut self, failure: String) {
        self.kept.insert(0, failure);
        if self.kept.len() > Failures::KEPT {
            self.kept.pop();
            self.more += 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    pub fn first(&self) -> &str {
        self.kept.first().map_or("", String::as_str)
    }

    /// Every failure kept, then how many more there were.
    pub fn list(&self) -> Vec<String> {
        let mut list = self.kept.clone();
        if self.more > 0 {
            list.push(format!("... and {} more failures like those", self.more));
        }
        list
    }
}

/// What one run measured: a sentence for people, figures for `make bench`.
pub struct Report {
    pub load: &'static str,
    pub summary: String,
    pub figures: Vec<(&'static str, f64)>,
    pub failures: Failures,
}

impl Report {
    fn new(load: &'static str, summary: String, failures: Failures) -> Report {
        Report {
            load,
            summary,
            figures: Vec::new(),
            failures,
        }
    }

    fn figure(&mut self, name: &'static str, value: f64) {
        self.figures.push((name, value));
    }

    fn cpu(&mut self, cpu: CpuUse) {
        self.figure("load_cpu", cpu.load);
        if let Some(server) = cpu.server {
            self.figure("server_cpu", server);
        }
    }

    /// `{"load":"pingpong","ok":true,"msgs_per_s":...,"failures":[],"summary":"..."}`
    pub fn to_json(&self) -> Json {
        let mut fields = vec![
            ("load".to_string(), Json::Text(self.load.into())),
            ("ok".to_string(), Json::Bool(self.failures.is_empty())),
        ];
        for &(name, value) in &self.figures {
            fields.push((name.to_string(), Json::Number(value)));
        }
        let failures = self.failures.list().into_iter().map(Json::Text).collect();
        fields.push(("failures".to_string(), Json::List(failures)));
        fields.push(("summary".to_string(), Json::Text(self.summary.clone())));
        Json::Object(fields)
    }
}

impl CpuUse {
    /// `CPU: server 0.98, load 0.61 cores`
    fn describe(&self) -> String {
        match self.server {
            Some(server) => format!("CPU: server {server:.2}, load {:.2} cores", self.load),
            None => format!("CPU: load {:.2} cores", self.load),
        }
    }
}

/// An epoll_wait timeout that ends at `until`, rounded up to whole milliseconds (a
/// sub-millisecond timeout would round down to 0 and spin), and at most 100 ms.
fn timeout_until(until: Instant) -> EpollTimeout {
    let left = until.saturating_duration_since(Instant::now());
    let millis = (left.as_micros().div_ceil(1000)).min(100) as u16;
    EpollTimeout::from(millis)
}
