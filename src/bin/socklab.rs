//! The socklab command: the lesson list, the chat room's server and client, and `explain`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use socklab::chat::{self, Room};
use socklab::lessons::LESSONS;
use socklab::serve::echo::{self, Echo};
use socklab::serve::{self, Options, Service, client::Ending};
use socklab::trace::{self, Mode};

const HELP: &str = "usage:
  socklab lessons      list the lessons (run one with `make lesson-N`)
  socklab chat-server [--mux LOOP] [--port P] [--bind ADDR] [--trace MODE] [--grace SECONDS]
                       the chat room (seed 003's Server) on 127.0.0.1:33333 unless told otherwise;
                       the trace goes to stdout, human unless --trace or SOCKLAB_TRACE say
                       otherwise. --grace: how long a client far behind may make no progress
                       before it is dropped as not reading (default 5). Ctrl-C (SIGINT) or
                       SIGTERM stops it cleanly: everyone is told, what waits is sent for at
                       most 1 s, every client is closed, exit status 0 (a second signal: at once)
  socklab echo-server [--mux LOOP] [--port P] [--bind ADDR] [--trace MODE]
                       each client's bytes back to it, on 127.0.0.1:33334 unless told otherwise;
                       SIGINT or SIGTERM stops it as it stops the chat room, without the notice
  socklab chat-client [--port P] [--host ADDR] [--trace MODE]
                       talk in the room: each line you type is said, `exit` or Ctrl-D leaves;
                       its trace is off unless --trace is given (SOCKLAB_TRACE is ignored), so
                       the room's lines stay readable
  socklab load pingpong|bulk|chat [OPTIONS]
                       load an echo server or the room and measure it (`socklab load` for more)
  socklab explain [--trace MODE] [--all] -- CMD [ARGS...]
                       runs CMD under strace -f and prints its system calls as the lessons do,
                       with their notes (`socklab explain -- python3 seed_client.py`): the
                       calls the lessons teach, or every call with --all; the trace goes to
                       stdout, CMD keeps its own stdin, stdout and stderr; the exit status is
                       CMD's (125 if explain itself fails, 126/127 if CMD cannot run / is missing)
  LOOP is the event loop: select (the default), poll, epoll (level-triggered) or epoll-et
  (edge-triggered); MODE is human, json, plain or off";

/// The event loops `chat-server --mux` and `echo-server --mux` can drive a service with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mux {
    Select,
    Poll,
    Epoll,
    EpollEdge,
}

impl Mux {
    const ALL: &[Mux] = &[Mux::Select, Mux::Poll, Mux::Epoll, Mux::EpollEdge];

    /// The word `--mux` takes.
    fn name(self) -> &'static str {
        match self {
            Mux::Select => "select",
            Mux::Poll => "poll",
            Mux::Epoll => "epoll",
            Mux::EpollEdge => "epoll-et",
        }
    }

    /// Runs `service` on `listener` with this loop until SIGINT (Ctrl-C) or SIGTERM stops it
    /// cleanly; says on stderr how it stopped.
    fn serve(self, command: &str, listener: impl AsFd, service: impl Service) -> Result<(), String> {
        let options = Options {
            stop_on_signals: true,
            ..Options::default()
        };
        let summary = match self {
            Mux::Select => serve::select::serve(listener, service, &options)?,
            Mux::Poll => serve::poll::serve(listener, service, &options)?,
            Mux::Epoll => serve::epoll::serve(listener, service, &options)?,
            Mux::EpollEdge => serve::epoll_et::serve(listener, service, &options)?,
        };
        if let Some(signal) = summary.stopped_by {
            let cut_off = match summary.cut_off {
                0 => String::new(),
                n => format!(
                    "; {n} of them cut off with output unsent after {} s",
                    serve::STOP_FLUSH.as_secs_f64()
                ),
            };
            eprintln!("socklab {command}: {signal}: stopped; every client was closed{cut_off}");
        }
        Ok(())
    }

    fn parse(text: &str) -> Result<Mux, String> {
        Mux::ALL.iter().copied().find(|mux| mux.name() == text).ok_or_else(|| {
            let names: Vec<&str> = Mux::ALL.iter().map(|mux| mux.name()).collect();
            format!(
                "--mux {text:?} is not an event loop socklab has; choose from: {}",
                names.join(", ")
            )
        })
    }
}

/// A chat command's options.
struct Settings {
    mux: Mux,
    port: u16,
    host: IpAddr,
    trace: Option<Mode>,
    /// The chat room's grace for a client that stopped reading.
    grace: Duration,
}

/// How a command failed: a bad argument (exit status 2) or a failed run (exit status 1).
enum Failure {
    Usage(String),
    Run(String),
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure::Run(message)
    }
}

fn main() {
    let words: Vec<String> = std::env::args().skip(1).collect();
    let rest = words.get(1..).unwrap_or_default();
    match words.first().map(String::as_str) {
        Some("lessons") => {
            for lesson in LESSONS {
                println!(
                    "make lesson-{:<2}  {:<22} {}",
                    lesson.number, lesson.slug, lesson.summary
                );
                for part in lesson.parts {
                    println!("  make lesson-{} ARGS={part}", lesson.number);
                }
            }
        }
        Some("chat-server") => finish("chat-server", chat_server(rest)),
        Some("chat-client") => finish("chat-client", chat_client(rest)),
        Some("echo-server") => finish("echo-server", echo_server(rest)),
        Some("load") => std::process::exit(socklab::load::main(rest)),
        Some("explain") => std::process::exit(socklab::explain::run(rest)),
        Some("-h" | "--help" | "help") | None => println!("{HELP}"),
        Some(other) => {
            eprintln!("socklab: unknown command {other:?}\n{HELP}");
            std::process::exit(2);
        }
    }
}

/// Prints what the trace holds, then turns a failure into one line on stderr and its exit
/// status.
fn finish(command: &str, outcome: Result<(), Failure>) {
    trace::finish();
    match outcome {
        Ok(()) => {}
        Err(Failure::Usage(message)) => {
            eprintln!("socklab {command}: {message}");
            std::process::exit(2);
        }
        Err(Failure::Run(message)) => {
            eprintln!("socklab {command}: {message}");
            std::process::exit(1);
        }
    }
}

/// Reads `--flag value` pairs; only the flags in `allowed` are accepted.
fn parse(words: &[String], allowed: &[&str]) -> Result<Settings, Failure> {
    let mut settings = Settings {
        mux: Mux::Select,
        port: serve::DEFAULT_PORT,
        host: IpAddr::V4(Ipv4Addr::LOCALHOST),
        trace: None,
        grace: chat::GRACE,
    };
    let mut words = words.iter();
    while let Some(flag) = words.next() {
        if matches!(flag.as_str(), "-h" | "--help") {
            println!("{HELP}");
            std::process::exit(0);
        }
        if !allowed.contains(&flag.as_str()) {
            let allowed = allowed.join(", ");
            return Err(Failure::Usage(format!("unknown option {flag:?}; it takes {allowed}")));
        }
        let value = words
            .next()
            .ok_or_else(|| Failure::Usage(format!("{flag} needs a value")))?;
        let bad = |what: &str| Failure::Usage(format!("{flag} {value:?} is not {what}"));
        match flag.as_str() {
            "--port" => settings.port = value.parse().map_err(|_| bad("a port number (0 to 65535)"))?,
            "--bind" | "--host" => settings.host = value.parse().map_err(|_| bad("an IP address"))?,
            "--mux" => settings.mux = Mux::parse(value).map_err(Failure::Usage)?,
            "--grace" => {
                let seconds: f64 = value.parse().map_err(|_| bad("a number of seconds"))?;
                settings.grace = Duration::try_from_secs_f64(seconds)
                    .ok()
                    .filter(|grace| !grace.is_zero())
                    .ok_or_else(|| bad("a number of seconds above 0"))?;
            }
            _ => settings.trace = Some(value.parse().map_err(Failure::Usage)?),
        }
    }
    Ok(settings)
}

/// `socklab chat-server`: binds, says where on stderr, and serves until killed.
fn chat_server(words: &[String]) -> Result<(), Failure> {
    let settings = parse(words, &["--mux", "--port", "--bind", "--trace", "--grace"])?;
    let listener = bind(
        "chat-server",
        "the room",
        &settings,
        "try `socklab chat-client {host}--port {port}` or `nc {ip} {port}`",
    )?;
    let options = chat::Options { grace: settings.grace };
    settings
        .mux
        .serve("chat-server", &listener, Room::with_options(chat::utc_clock, options))?;
    Ok(())
}

/// `socklab echo-server`: the same, with the echo service.
fn echo_server(words: &[String]) -> Result<(), Failure> {
    let mut settings = parse(words, &["--mux", "--port", "--bind", "--trace"])?;
    if !words.iter().any(|word| word == "--port") {
        settings.port = echo::DEFAULT_PORT;
    }
    let listener = bind("echo-server", "the echo server", &settings, "try `nc {ip} {port}`")?;
    settings.mux.serve("echo-server", &listener, Echo::new())?;
    Ok(())
}

/// Sets up the trace, binds, and says on stderr where `what` listens, with `hint` (in which
/// `{host}`, `{ip}` and `{port}` are filled in). Tests read the port from that line.
fn bind(command: &str, what: &str, settings: &Settings, hint: &str) -> Result<OwnedFd, Failure> {
    if let Some(mode) = settings.trace {
        trace::set_mode(mode);
    }
    trace::set_actor("server");
    let listener = serve::listen(SocketAddr::new(settings.host, settings.port))?;
    let local = serve::local_addr(&listener)?;
    let host = if local.ip() == IpAddr::V4(Ipv4Addr::LOCALHOST) {
        String::new()
    } else {
        format!("--host {} ", local.ip())
    };
    let hint = hint
        .replace("{host}", &host)
        .replace("{ip}", &local.ip().to_string())
        .replace("{port}", &local.port().to_string());
    eprintln!(
        "socklab {command}: {what} listens on {local} ({name}); {hint}; Ctrl-C stops it",
        name = settings.mux.name(),
    );
    Ok(listener)
}

/// `socklab chat-client`: the room's lines on stdout, what you type sent line by line.
fn chat_client(words: &[String]) -> Result<(), Failure> {
    let settings = parse(words, &["--port", "--host", "--trace"])?;
    trace::set_mode(settings.trace.unwrap_or(Mode::Off));
    trace::set_actor("client");
    let server = SocketAddr::new(settings.host, settings.port);
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    match serve::client::run(server, stdin.as_fd(), stdout.as_fd())? {
        Ending::Left => Ok(()),
        Ending::LeftUnanswered => {
            eprintln!(
                "socklab chat-client: the server did not close the connection after we left; closed it ourselves"
            );
            Ok(())
        }
        Ending::ServerClosed => Err(Failure::Run("the server closed the connection".into())),
    }
}
