//! `make bench`: socklab's echo loops against the same loops written plainly in C and against
//! mio, on the same loads from `socklab load`, interleaved, 5 repetitions; then the chat room's
//! fan-out under every loop, 3 times. Prints the tables and writes target/bench/results.json.
//!
//! Each run starts a fresh server (pinned to CPU 0 with taskset when there are two CPUs), runs
//! one `socklab load` against it (pinned to CPU 1), and kills the server by its PID. Within one
//! repetition every loop and every reference meets the same cell one after the other, so noise
//! from other work on the machine falls on all of them alike.
//!
//! `bench [--quick] [--reps N] [--secs S] [--loops select,poll,...]`; `--reps N` repeats the echo
//! cells N times and the chat min(N, 3) times; `--quick` (make bench QUICK=1) is one repetition
//! of short runs and a small room, for development.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use socklab::load::json::Json;

mod report;

const LOOPS: [&str; 4] = ["select", "poll", "epoll", "epoll-et"];

/// The servers measured: socklab's loop, the C loop of the same kind, and mio (epoll only,
/// edge-triggered whatever the row; measured once per cell and repetition, compared with both
/// epoll rows).
#[derive(Clone, Copy, PartialEq)]
enum Server {
    Socklab,
    C,
    Mio,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Socklab => "socklab",
            Server::C => "c",
            Server::Mio => "mio",
        }
    }
}

/// One load the echo servers meet.
struct Cell {
    key: &'static str,
    title: &'static str,
    /// `socklab load` arguments (before --port, --server-pid, --json).
    args: &'static [&'static str],
    /// The figure compared: msgs_per_s or mb_per_s.
    metric: &'static str,
    /// select cannot hold this many descriptors (FD_SETSIZE is 1024): no run, "—".
    beyond_select: bool,
}

const CELLS: &[Cell] = &[
    Cell {
        key: "pingpong-1",
        title: "ping-pong C=1",
        args: &["pingpong", "--conns", "1"],
        metric: "msgs_per_s",
        beyond_select: false,
    },
    Cell {
        key: "pingpong-50",
        title: "C=50",
        args: &["pingpong", "--conns", "50"],
        metric: "msgs_per_s",
        beyond_select: false,
    },
    Cell {
        key: "pingpong-500",
        title: "C=500",
        args: &["pingpong", "--conns", "500"],
        metric: "msgs_per_s",
        beyond_select: false,
    },
    Cell {
        key: "bulk-1",
        title: "bulk 1 conn",
        args: &["bulk", "--chunk", "65536"],
        metric: "mb_per_s",
        beyond_select: false,
    },
    Cell {
        key: "pingpong-50-idle-900",
        title: "C=50 + 900 idle",
        args: &["pingpong", "--conns", "50", "--idle", "900"],
        metric: "msgs_per_s",
        beyond_select: false,
    },
    Cell {
        key: "pingpong-50-idle-10000",
        title: "C=50 + 10,000 idle",
        args: &["pingpong", "--conns", "50", "--idle", "10000"],
        metric: "msgs_per_s",
        beyond_select: true,
    },
];

/// The chat fan-out's windows (`socklab load chat --window`). 0, no window: every client sends
/// all its lines at once and only TCP and the server's flow control pace it; what issue 7 asks
/// to see delivered with no loss. 2: a client says line k only once (k - 2) x 499 deliveries
/// of its lines have been made, which keeps what waits in the room for any one client near
/// 500 x 2 lines (45 KB, under today's 64 KiB queue), so a room without flow control can be
/// measured too.
const CHAT_WINDOWS: [usize; 2] = [0, 2];

/// The runs of one server (socklab's loop `lp`, the C loop `lp`, or mio) in one echo cell.
struct EchoRuns {
    cell: &'static Cell,
    lp: &'static str,
    server: Server,
    runs: Vec<Run>,
}

/// The chat fan-out runs of one loop and window.
struct ChatRuns {
    lp: &'static str,
    window: usize,
    runs: Vec<Run>,
}

/// A load that used this much of its CPU may itself have set the pace: the figure it measured
/// is then a lower bound for that server.
const LOAD_BOUND: f64 = 0.9;

struct Settings {
    /// Repetitions of every echo cell: five, so that the median of the paired ratios shrugs off
    /// a run or two disturbed by other work on the machine.
    reps: usize,
    /// Repetitions of the chat fan-out, a check of delivery with figures of its own (no ratio).
    chat_reps: usize,
    secs: f64,
    warmup: f64,
    chat_clients: usize,
    chat_lines: usize,
    loops: Vec<&'static str>,
    quick: bool,
}

/// Where the programs are: next to this one (target/release), and under target/.
struct Programs {
    socklab: PathBuf,
    echo_c: PathBuf,
    mio: PathBuf,
    out: PathBuf,
    /// `taskset -c N` prefixes, when there are two CPUs to pin to.
    pin: bool,
}

/// One run: the load's report, or why there is none.
struct Run {
    report: Option<Json>,
    failures: Vec<String>,
}

impl Run {
    fn figure(&self, name: &str) -> Option<f64> {
        self.report.as_ref()?.number(name).filter(|n| n.is_finite())
    }

    fn ok(&self) -> bool {
        self.failures.is_empty()
    }

    /// `WHO: the first failure (and N more)`, if the run failed.
    fn failure_line(&self, who: &str) -> Option<String> {
        match self.failures.as_slice() {
            [] => None,
            [only] => Some(format!("{who}: {only}")),
            [first, rest @ ..] => Some(format!("{who}: {first} (and {} more)", rest.len())),
        }
    }
}

fn main() {
    let settings = match parse(std::env::args().skip(1).collect()) {
        Ok(settings) => settings,
        Err(message) => {
            eprintln!("bench: {message}");
            std::process::exit(2);
        }
    };
    let programs = match find_programs() {
        Ok(programs) => programs,
        Err(message) => {
            eprintln!("bench: {message}");
            std::process::exit(1);
        }
    };
    raise_descriptor_limit();
    let started = Instant::now();
    let pinning = if programs.pin {
        "servers on CPU 0, load on CPU 1"
    } else {
        "not pinned (one CPU, or no taskset)"
    };
    eprintln!(
        "bench: {} repetition(s) of {} s echo runs, {} of the chat, {pinning}; a line per run below, the tables at the end",
        settings.reps, settings.secs, settings.chat_reps
    );

    let mut load_averages = Vec::new();
    let mut echo: Vec<EchoRuns> = Vec::new();
    for cell in CELLS {
        let mut servers: Vec<(&'static str, Server)> = Vec::new();
        for &lp in &settings.loops {
            if !(cell.beyond_select && lp == "select") {
                servers.extend([(lp, Server::Socklab), (lp, Server::C)]);
            }
            // mio right after the first epoll loop, so that both epoll loops' runs are near
            // mio's in time (the ratios pair runs of the same repetition).
            if lp.starts_with("epoll") && !servers.iter().any(|&(_, server)| server == Server::Mio) {
                servers.push(("epoll", Server::Mio));
            }
        }
        let first = echo.len();
        echo.extend(servers.iter().map(|&(lp, server)| EchoRuns {
            cell,
            lp,
            server,
            runs: Vec::new(),
        }));
        for rep in 0..settings.reps {
            // Every other repetition in the opposite order: a machine getting busier (or
            // quieter) during a repetition then favours neither run of a pair.
            let entries = &mut echo[first..];
            if rep % 2 == 1 {
                entries.reverse();
            }
            for entry in entries.iter_mut() {
                load_averages.extend(load_average());
                let run = echo_run(&programs, &settings, cell, entry.lp, entry.server);
                progress(cell.title, rep, entry.lp, entry.server, &run, cell.metric);
                entry.runs.push(run);
            }
            if rep % 2 == 1 {
                entries.reverse();
            }
        }
    }
    let mut chat: Vec<ChatRuns> = Vec::new();
    for window in CHAT_WINDOWS {
        chat.extend(settings.loops.iter().map(|&lp| ChatRuns {
            lp,
            window,
            runs: Vec::new(),
        }));
    }
    for rep in 0..settings.chat_reps {
        for entry in &mut chat {
            load_averages.extend(load_average());
            let run = chat_run(&programs, &settings, entry.lp, entry.window);
            let title = format!("chat, window {}", entry.window);
            progress(&title, rep, entry.lp, Server::Socklab, &run, "lines_per_s");
            entry.runs.push(run);
        }
    }
    let elapsed = started.elapsed();

    let rows = report::echo_rows(&settings.loops, &echo);
    let mut out = String::new();
    report::echo_table(&mut out, &rows, settings.reps);
    report::ratio_tables(&mut out, &rows, &settings.loops);
    report::chat_table(&mut out, &chat, &settings);
    report::failures(&mut out, &echo, &chat);
    let count = echo.iter().map(|entry| entry.runs.len()).sum::<usize>()
        + chat.iter().map(|entry| entry.runs.len()).sum::<usize>();
    let _ = writeln!(
        out,
        "\n{count} runs in {:.0} s ({:.1} min).",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() / 60.0
    );
    report::machine(&mut out, &load_averages);
    print!("{out}");
    let file = programs.out.join("results.json");
    let document = report::results_json(&settings, programs.pin, elapsed, &load_averages, &rows, &chat);
    match fs::write(&file, format!("{document}\n")) {
        Ok(()) => println!("Results: {}", file.display()),
        Err(e) => eprintln!("bench: writing {}: {e}", file.display()),
    }
}

fn parse(words: Vec<String>) -> Result<Settings, String> {
    let mut settings = Settings {
        reps: 5,
        chat_reps: 3,
        secs: 1.0,
        warmup: 0.2,
        chat_clients: 500,
        chat_lines: 200,
        loops: LOOPS.to_vec(),
        quick: false,
    };
    let mut words = words.into_iter();
    while let Some(flag) = words.next() {
        if flag == "--quick" {
            settings.quick = true;
            settings.reps = 1;
            settings.chat_reps = 1;
            settings.secs = 0.3;
            settings.warmup = 0.1;
            settings.chat_clients = 100;
            settings.chat_lines = 50;
            continue;
        }
        let value = words.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--reps" => {
                settings.reps = value.parse().map_err(|_| format!("--reps {value:?}"))?;
                settings.chat_reps = settings.reps.min(3);
            }
            "--secs" => settings.secs = value.parse().map_err(|_| format!("--secs {value:?}"))?,
            "--loops" => {
                settings.loops = value
                    .split(',')
                    .map(|name| {
                        LOOPS
                            .into_iter()
                            .find(|lp| *lp == name)
                            .ok_or(format!("no loop {name:?}"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            _ => {
                return Err(format!(
                    "unknown option {flag}; it takes --quick, --reps N, --secs S, --loops a,b"
                ));
            }
        }
    }
    Ok(settings)
}

fn find_programs() -> Result<Programs, String> {
    let exe = std::env::current_exe().map_err(|e| format!("where am I? {e}"))?;
    let release = exe.parent().ok_or("no folder around this program")?;
    let target = release.parent().ok_or("no target folder")?;
    let programs = Programs {
        socklab: release.join("socklab"),
        echo_c: target.join("bench").join("echo-c"),
        mio: target.join("mio").join("release").join("mio-echo"),
        out: target.join("bench"),
        pin: std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2)
            && Command::new("taskset").arg("-V").output().is_ok(),
    };
    for program in [&programs.socklab, &programs.echo_c, &programs.mio] {
        if !program.exists() {
            return Err(format!("{} is not built: run `make bench`", program.display()));
        }
    }
    Ok(programs)
}

/// The servers need a descriptor per idle connection: soft limit up to the hard one, which
/// every process started from here inherits.
fn raise_descriptor_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// The machine's 1-minute load average (/proc/loadavg): how many processes were running or
/// waiting for a CPU, on average. The bench itself keeps about two busy (a server and a load).
fn load_average() -> Option<f64> {
    fs::read_to_string("/proc/loadavg")
        .ok()?
        .split(' ')
        .next()?
        .parse()
        .ok()
}

/// `taskset -c CPU program args...`, or the program alone.
fn pinned(pin: bool, cpu: &str, program: &Path, args: &[&str]) -> Command {
    let mut command = if pin {
        let mut taskset = Command::new("taskset");
        taskset.args(["-c", cpu]).arg(program);
        taskset
    } else {
        Command::new(program)
    };
    command.args(args);
    command
}

fn echo_run(programs: &Programs, settings: &Settings, cell: &Cell, lp: &str, server: Server) -> Run {
    let command = match server {
        Server::Socklab => pinned(
            programs.pin,
            "0",
            &programs.socklab,
            &["echo-server", "--mux", lp, "--port", "0", "--trace", "off"],
        ),
        Server::C => pinned(programs.pin, "0", &programs.echo_c, &[lp]),
        Server::Mio => pinned(programs.pin, "0", &programs.mio, &[]),
    };
    let mut args: Vec<String> = cell.args.iter().map(|s| s.to_string()).collect();
    args.extend(["--secs".into(), settings.secs.to_string()]);
    if cell.args[0] == "pingpong" {
        args.extend(["--warmup".into(), settings.warmup.to_string()]);
    }
    measure(programs, command, &args, 60)
}

fn chat_run(programs: &Programs, settings: &Settings, lp: &str, window: usize) -> Run {
    let command = pinned(
        programs.pin,
        "0",
        &programs.socklab,
        &["chat-server", "--mux", lp, "--port", "0", "--trace", "off"],
    );
    let args: Vec<String> = [
        "chat",
        "--clients",
        &settings.chat_clients.to_string(),
        "--lines",
        &settings.chat_lines.to_string(),
        "--window",
        &window.to_string(),
        "--timeout",
        "60",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    measure(programs, command, &args, 90)
}

/// Starts the server, waits for the line that says where it listens, runs the load against
/// it, and kills the server. The server's stderr goes to target/bench/server.log.
fn measure(programs: &Programs, mut server: Command, load_args: &[String], limit_secs: u64) -> Run {
    let failed = |failure: String| Run {
        report: None,
        failures: vec![failure],
    };
    let log_path = programs.out.join("server.log");
    let log = match fs::File::create(&log_path) {
        Ok(log) => log,
        Err(e) => return failed(format!("{}: {e}", log_path.display())),
    };
    let mut child = match server.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log).spawn() {
        Ok(child) => child,
        Err(e) => return failed(format!("starting the server: {e}")),
    };
    let port = wait_for_port(&log_path, &mut child);
    let run = match port {
        Ok(port) => run_load(programs, load_args, port, child.id(), limit_secs),
        Err(failure) => failed(failure),
    };
    let _ = child.kill();
    let _ = child.wait();
    run
}

/// The port from the server's `listens on 127.0.0.1:PORT` line (socklab, C and mio all say it).
fn wait_for_port(log_path: &Path, child: &mut std::process::Child) -> Result<u16, String> {
    let give_up = Instant::now() + Duration::from_secs(10);
    while Instant::now() < give_up {
        let text = fs::read_to_string(log_path).unwrap_or_default();
        if let Some(at) = text.find("listens on 127.0.0.1:") {
            let digits: String = text[at + 21..].chars().take_while(char::is_ascii_digit).collect();
            return digits.parse().map_err(|_| format!("no port in {text:?}"));
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the server exited ({status}) before listening: {text}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err("the server did not say where it listens within 10 s".into())
}

/// Runs `socklab load ... --json` against the server; its output goes to target/bench/load.out
/// and load.err. The load bounds its own time; `limit_secs` only guards against a bug in it.
fn run_load(programs: &Programs, load_args: &[String], port: u16, pid: u32, limit_secs: u64) -> Run {
    let failed = |failure: String| Run {
        report: None,
        failures: vec![failure],
    };
    let (out_path, err_path) = (programs.out.join("load.out"), programs.out.join("load.err"));
    let files = fs::File::create(&out_path).and_then(|out| Ok((out, fs::File::create(&err_path)?)));
    let (out, err) = match files {
        Ok(files) => files,
        Err(e) => return failed(format!("{}: {e}", programs.out.display())),
    };
    let mut load = pinned(programs.pin, "1", &programs.socklab, &["load"]);
    load.args(load_args)
        .args(["--port", &port.to_string(), "--server-pid", &pid.to_string(), "--json"]);
    let mut child = match load.stdin(Stdio::null()).stdout(out).stderr(err).spawn() {
        Ok(child) => child,
        Err(e) => return failed(format!("starting the load: {e}")),
    };
    let give_up = Instant::now() + Duration::from_secs(limit_secs);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < give_up => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return failed(format!("the load ran past {limit_secs} s and was killed"));
            }
            Err(e) => return failed(format!("waiting for the load: {e}")),
        }
    };
    let stdout = fs::read_to_string(&out_path).unwrap_or_default();
    let Ok(report) = Json::parse(stdout.trim()) else {
        let stderr = fs::read_to_string(&err_path).unwrap_or_default();
        return failed(format!("the load gave no report ({status}): {}", stderr.trim()));
    };
    let failures = match report.get("failures") {
        Some(Json::List(items)) => items
            .iter()
            .filter_map(|item| match item {
                Json::Text(text) => Some(text.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Run {
        report: Some(report),
        failures,
    }
}

/// One line per run while the bench goes on.
fn progress(title: &str, rep: usize, lp: &str, server: Server, run: &Run, metric: &str) {
    let figure = run.figure(metric).map_or("-".into(), |value| human(value, metric));
    let cpu = match (run.figure("server_cpu"), run.figure("load_cpu")) {
        (Some(server), Some(load)) => format!("CPU server {server:.2}, load {load:.2}"),
        _ => String::new(),
    };
    let verdict = run.failure_line("  FAILED").unwrap_or_default();
    let lp = if server == Server::Mio { "-" } else { lp };
    eprintln!(
        "  {title:<20} #{} {lp:<8} {:<7} {figure:>14}  {cpu}{verdict}",
        rep + 1,
        server.name()
    );
}

/// `123.4k msgs/s`, `1523 MB/s`, `4.05M lines/s`.
fn human(value: f64, metric: &str) -> String {
    match metric {
        "mb_per_s" => format!("{value:.0} MB/s"),
        "lines_per_s" => format!("{:.2}M lines/s", value / 1e6),
        _ => format!("{:.1}k msgs/s", value / 1e3),
    }
}
