//! `socklab explain -- CMD`: a real program's system calls under `strace -f`, with the lessons'
//! notes. Python programs (the brief's one-liner, seed 003's chat client against `socklab
//! chat-server`, small clients against a server in this test), nc and sh, all on loopback:
//! known calls get their note, in context (a close after a reset, a listener's close, AF_UNIX,
//! a fork's shared socket); other calls pass with none; the lines are the ones strace prints;
//! the command keeps its descriptors, its output and its exit status; explain's own failures
//! are one line each.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::chat;
use crate::util;
use socklab::trace::notes;

/// No run here takes more than a few seconds; a stuck one is killed (by its PID) at this.
const LIMIT: Duration = Duration::from_secs(30);

/// `socklab explain ARGS...` with `stdin` as its input, to the end.
fn explain(args: &[&str], stdin: &[u8]) -> Output {
    util::require("strace");
    let mut command = Command::new(chat::socklab());
    command
        .arg("explain")
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("SOCKLAB_TRACE");
    run(command, stdin)
}

fn run(mut command: Command, stdin: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting socklab explain");
    let mut input = child.stdin.take().expect("its stdin");
    let _ = input.write_all(stdin);
    drop(input);
    util::wait_with_deadline(child, LIMIT)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The Python interpreter itself, not a wrapper script (pyenv's shims are bash scripts, whose
/// own processes would crowd the trace).
fn python() -> String {
    util::require("python3");
    let output = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("running python3");
    text(&output.stdout).trim().to_string()
}

fn row(key: &str) -> Option<String> {
    notes::lookup(key, None).map(str::to_string)
}

/// One record of `--trace json`.
#[derive(Debug)]
struct Record {
    actor: String,
    syscall: Option<String>,
    line: Option<String>,
    note: Option<String>,
    mark: Option<String>,
}

/// The trace's records; stdout's other lines are the command's own output. A line the command
/// writes in pieces (Python's print: the text, then the newline) can have a record between
/// its pieces, so a record is looked for anywhere in a line.
fn records(stdout: &str) -> Vec<Record> {
    stdout
        .lines()
        .filter_map(|line| line.find("{\"seq\":").map(|at| &line[at..]))
        .map(|line| Record {
            actor: field(line, "actor").unwrap_or_default(),
            syscall: field(line, "syscall"),
            line: field(line, "line"),
            note: field(line, "note"),
            mark: field(line, "mark"),
        })
        .collect()
}

/// A string field of a JSON object on one line (None for null or absent).
fn field(object: &str, name: &str) -> Option<String> {
    let start = object.find(&format!("\"{name}\":"))? + name.len() + 3;
    let mut chars = object[start..].chars();
    if chars.next()? != '"' {
        return None;
    }
    let mut value = String::new();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(value),
            '\\' => match chars.next()? {
                'n' => value.push('\n'),
                't' => value.push('\t'),
                'r' => value.push('\r'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    value.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                other => value.push(other),
            },
            c => value.push(c),
        }
    }
    None
}

/// The first record at or after `from` whose line starts with `start`.
fn find<'a>(records: &'a [Record], from: usize, start: &str) -> (usize, &'a Record) {
    records
        .iter()
        .enumerate()
        .skip(from)
        .find(|(_, r)| r.line.as_deref().is_some_and(|l| l.starts_with(start)))
        .unwrap_or_else(|| panic!("no line starting {start:?} after record {from} in {records:#?}"))
}

/// A server on 127.0.0.1 for `connections` clients: `serve` gets each connection.
fn server(connections: usize, serve: fn(TcpStream)) -> (u16, JoinHandle<()>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding a test server");
    let port = listener.local_addr().expect("its address").port();
    let handle = std::thread::spawn(move || {
        for _ in 0..connections {
            let (stream, _) = listener.accept().expect("accepting");
            stream.set_read_timeout(Some(LIMIT)).expect("a read timeout");
            serve(stream);
        }
    });
    (port, handle)
}

/// Reads "hello", answers "world", closes (FIN).
fn hello_world(mut stream: TcpStream) {
    let mut hello = [0u8; 5];
    stream.read_exact(&mut hello).expect("the client's hello");
    stream.write_all(b"world").expect("answering");
}

/// A client that says hello, reads the answer and the server's end of file, and closes.
fn client_program(port: u16) -> String {
    format!(
        "import os, socket\n\
         s = socket.create_connection(('127.0.0.1', {port}))\n\
         s.sendall(b'hello')\n\
         data = s.recv(100)\n\
         assert s.recv(100) == b''\n\
         s.close()\n\
         os.write(1, data + b'\\n')\n"
    )
}

#[test]
fn a_python_socket_and_its_close_print_with_their_notes() {
    // The interpreter itself, not a launcher (pyenv's shim is a shell script): a note prints
    // the first time its row applies, and a launcher's own sockets (a name lookup's) would take it.
    let python = python();
    let output = explain(&["--", &python, "-c", "import socket; socket.socket().close()"], b"");
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    let lines: Vec<&str> = stdout.lines().collect();
    let socket = lines
        .iter()
        .position(|l| l.contains("socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC, IPPROTO_IP) = 3"))
        .unwrap_or_else(|| panic!("no socket line in:\n{stdout}"));
    assert_eq!(lines[socket + 1].trim(), format!("# {}", row("socket").unwrap()));
    let close = socket + 2;
    assert!(lines[close].contains("close(3)"), "{}", lines[close]);
    assert_eq!(
        lines[close + 1].trim(),
        format!("# {}", row("close.tcp-unconnected").unwrap()),
        "a socket that never connected sends nothing when closed"
    );
}

#[test]
fn the_command_keeps_its_descriptors_its_output_and_its_input() {
    let python = python();
    let program = "import os, socket, sys\n\
                   s = socket.socket()\n\
                   line = f'{s.fileno()} {sorted(os.listdir(\"/proc/self/fd\"))} {sys.stdin.read()}'\n\
                   os.write(1, line.encode() + b'\\n')\n\
                   os.write(2, b'to stderr\\n')\n";
    let alone = run(
        {
            let mut c = Command::new(&python);
            c.args(["-c", program]);
            c
        },
        b"typed",
    );
    assert!(alone.status.success(), "{alone:?}");
    assert!(
        text(&alone.stdout).starts_with("3 ['0', '1', "),
        "its first socket is 3: {alone:?}"
    );
    for mode in ["json", "human"] {
        let output = explain(&["--trace", mode, "--", &python, "-c", program], b"typed");
        let stdout = text(&output.stdout);
        let own: Vec<&str> = stdout
            .lines()
            .filter(|l| !l.starts_with('{') && !l.starts_with('+') && !l.starts_with(' '))
            .collect();
        assert_eq!(
            own,
            [text(&alone.stdout).trim_end()],
            "{mode}: the command's own stdout"
        );
        assert_eq!(
            text(&output.stderr),
            "to stderr\n",
            "{mode}: its stderr, and nothing else"
        );
    }
}

#[test]
fn a_client_of_a_real_server_gets_the_notes_of_its_calls() {
    let python = python();
    let (port, server) = server(1, hello_world);
    let output = explain(&["--trace", "json", "--", &python, "-c", &client_program(port)], b"");
    server.join().expect("the server");
    assert!(output.status.success(), "{output:?}");
    assert!(
        text(&output.stdout).lines().any(|l| l == "world"),
        "the command's print"
    );
    let records = records(&text(&output.stdout));
    let (socket, record) = find(
        &records,
        0,
        "socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC, IPPROTO_TCP) = 3",
    );
    assert_eq!(record.note, row("socket"));
    let (at, record) = find(&records, socket, "connect(3, {sa_family=AF_INET, sin_port=htons(");
    assert_eq!(record.note, row("connect"), "a blocking TCP connect: the handshake");
    let (at, record) = find(&records, at, "sendto(3, \"hello\", 5, 0, NULL, 0)");
    assert_eq!(record.note, row("send"), "send() arrives as sendto");
    let (at, record) = find(&records, at, "recvfrom(3, \"world\", 100, 0, NULL, NULL)");
    assert_eq!(record.note, row("recv"));
    let (at, record) = find(&records, at, "recvfrom(3, \"\", 100, 0, NULL, NULL)");
    assert_eq!(record.note, row("eof.tcp"), "0 from a TCP socket: the server's FIN");
    let (_, record) = find(&records, at, "close(3)");
    assert_eq!(record.note, row("close.tcp"), "the client's close sends its FIN");
}

#[test]
fn the_lines_are_the_ones_strace_prints() {
    let python = python();
    let (port, server) = server(3, hello_world);
    let program = client_program(port);
    // strace without -f prints no pid prefix: the form explain lays its lines out in.
    let log = std::env::temp_dir().join(format!("socklab-explain-{}.txt", std::process::id()));
    let mut strace = Command::new("strace");
    strace.arg("-o").arg(&log).args([&python, "-c", &program]);
    let alone = run(strace, b"");
    let strace_text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    assert!(alone.status.success(), "{alone:?}");
    let json = explain(&["--trace", "json", "--", &python, "-c", &program], b"");
    let human = explain(&["--", &python, "-c", &program], b"");
    server.join().expect("the server");
    let json_lines: Vec<String> = records(&text(&json.stdout))
        .into_iter()
        .filter_map(|r| r.line)
        .collect();
    let human = text(&human.stdout);
    let compared: Vec<&str> = strace_text
        .lines()
        .filter(|l| {
            ["socket(", "connect(3", "sendto(3", "recvfrom(3", "close(3)"]
                .iter()
                .any(|s| l.starts_with(s))
        })
        .collect();
    assert!(compared.len() >= 6, "strace printed too little:\n{strace_text}");
    for line in compared {
        assert!(json_lines.iter().any(|l| l == line), "json has no line {line:?}");
        assert!(
            human.lines().any(|l| l.contains(line)),
            "human has no line {line:?}:\n{human}"
        );
    }
}

#[test]
fn calls_the_lessons_do_not_teach_pass_plainly() {
    let python = python();
    let program = "import socket; socket.socket().close()";
    let taught = records(&text(
        &explain(&["--trace", "json", "--", &python, "-c", program], b"").stdout,
    ));
    let every = records(&text(
        &explain(&["--trace", "json", "--all", "--", &python, "-c", program], b"").stdout,
    ));
    let named = |records: &[Record], name: &str| records.iter().filter(|r| r.syscall.as_deref() == Some(name)).count();
    for name in ["mmap", "openat", "brk", "futex", "newfstatat", "lseek"] {
        assert_eq!(named(&taught, name), 0, "{name} is not a call the lessons teach");
    }
    let untaught: Vec<&Record> = every
        .iter()
        .filter(|r| {
            ["mmap", "openat", "brk", "newfstatat", "lseek", "munmap", "mprotect"]
                .contains(&r.syscall.as_deref().unwrap_or_default())
        })
        .collect();
    assert!(
        untaught.len() >= 10,
        "--all shows every call: {} untaught ones",
        untaught.len()
    );
    for record in untaught {
        assert_eq!(record.note, None, "no guessed note: {record:?}");
    }
    assert_eq!(
        find(&every, 0, "socket(").1.note,
        row("socket"),
        "with --all the taught calls keep theirs"
    );
    // Python reads its modules: read(2)'s row speaks of sockets, so those reads have none.
    let file_reads = taught
        .iter()
        .filter(|r| r.syscall.as_deref() == Some("read"))
        .collect::<Vec<_>>();
    assert!(file_reads.len() >= 5);
    assert!(file_reads.iter().all(|r| r.note.is_none()), "{file_reads:#?}");
}

#[test]
fn notes_know_their_context() {
    let python = python();
    // Accepts one client and resets it (SO_LINGER 0).
    let (port, server) = server(1, |stream| {
        socket2::SockRef::from(&stream)
            .set_linger(Some(Duration::ZERO))
            .expect("SO_LINGER 0");
    });
    let program = format!(
        "import os, socket\n\
         def mark(word): os.write(1, b'@' + word + b'\\n')\n\
         mark(b'listener')\n\
         l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(1); l.close()\n\
         mark(b'unix')\n\
         a, b = socket.socketpair(); a.close(); b.close()\n\
         mark(b'reset')\n\
         c = socket.create_connection(('127.0.0.1', {port}))\n\
         try:\n    c.recv(10)\nexcept ConnectionResetError:\n    pass\n\
         c.close()\n\
         mark(b'fork')\n\
         s = socket.socket()\n\
         pid = os.fork()\n\
         if pid == 0:\n    os._exit(0)\n\
         os.waitpid(pid, 0)\n\
         s.close()\n"
    );
    let output = explain(&["--trace", "json", "--", &python, "-c", &program], b"");
    server.join().expect("the server");
    assert!(output.status.success(), "{output:?}");
    let records = records(&text(&output.stdout));
    let after = |word: &str| find(&records, 0, &format!("write(1, \"@{word}\\n\"")).0;

    let (_, close) = find(&records, after("listener"), "close(3)");
    assert_eq!(close.note, row("close.listener"), "a listener's close resets its queue");
    let (_, close) = find(&records, after("unix"), "close(3)");
    assert_eq!(close.note, row("close.unix"), "AF_UNIX has no FIN");
    let (at, recv) = find(&records, after("reset"), "recvfrom(3, ");
    assert!(
        recv.line
            .as_deref()
            .unwrap()
            .ends_with("ECONNRESET (Connection reset by peer)"),
        "{recv:?}"
    );
    assert_eq!(
        recv.note.as_deref(),
        notes::lookup("recv", Some(nix::errno::Errno::ECONNRESET))
    );
    let (_, close) = find(&records, at, "close(3)");
    assert_eq!(close.note, row("close.tcp-dead"), "a close after RST is not a FIN");
    let (at, clone) = find(&records, after("fork"), "clone(");
    assert_eq!(clone.note, row("clone"));
    let (_, close) = find(&records, at, "close(3)");
    assert_eq!(close.note, row("close.shared"), "the child holds a copy of the socket");
    let child = records
        .iter()
        .find(|r| r.mark.as_deref() == Some("+++ exited with 0 +++"))
        .expect("an exit mark");
    assert_eq!(
        child.actor, "python3#2",
        "the forked child is the program's second actor"
    );
}

#[test]
fn nc_against_a_real_server() {
    util::require("nc");
    let (port, server) = server(1, |mut stream| {
        let mut hello = [0u8; 6];
        stream.read_exact(&mut hello).expect("nc's line");
        stream.write_all(b"bye\n").expect("answering");
    });
    let output = explain(
        &[
            "--trace",
            "json",
            "--",
            "nc",
            "-N",
            "-n",
            "127.0.0.1",
            &port.to_string(),
        ],
        b"hello\n",
    );
    server.join().expect("the server");
    assert!(output.status.success(), "{output:?}");
    assert!(text(&output.stdout).lines().any(|l| l == "bye"), "nc's own output");
    let records = records(&text(&output.stdout));
    let (at, connect) = find(&records, 0, "connect(3, {sa_family=AF_INET, sin_port=htons(");
    let connect_rows = [
        row("connect"),
        notes::lookup("connect", Some(nix::errno::Errno::EINPROGRESS)).map(str::to_string),
    ];
    assert!(connect_rows.contains(&connect.note), "{connect:?}");
    let (_, stdin) = find(&records, 0, "read(0, \"hello\\n\"");
    assert_eq!(stdin.note, None, "stdin is not a socket");
    let (at, write) = find(&records, at, "write(3, \"hello\\n\", 6)");
    assert_eq!(write.note, row("write"));
    let (at, shutdown) = find(&records, at, "shutdown(3, SHUT_WR)");
    assert_eq!(shutdown.note, row("shutdown"));
    let (at, eof) = find(&records, at, "read(3, \"\"");
    assert_eq!(eof.note, row("eof.tcp"));
    let (_, close) = find(&records, at, "close(3)");
    assert_eq!(close.note, row("close.tcp-shut"), "the FIN went at shutdown");
    // glibc's nscd probe, if this nc makes one: an AF_UNIX socket whose connect failed has no
    // peer to read an end of file.
    if let Some(probe) = records
        .iter()
        .position(|r| r.line.as_deref().is_some_and(|l| l.contains("nscd")))
    {
        assert_ne!(find(&records, probe, "close(").1.note, row("close.unix"));
    }
}

#[test]
fn seed_003s_chat_client_against_the_chat_server() {
    let python = python();
    let server = chat::Server::start("select");
    let client = util::root().join("lessons/11-select-chat-room/seed_client.py");
    let port = server.port.to_string();
    let output = explain(
        &[
            "--trace",
            "json",
            "--",
            &python,
            "-u",
            client.to_str().unwrap(),
            "127.0.0.1",
            &port,
        ],
        b"hello\nexit\n",
    );
    assert!(output.status.success(), "{output:?}");
    assert!(text(&output.stdout).contains("ByeBye~~"), "the client's own output");
    let records = records(&text(&output.stdout));
    // settimeout(1) makes the socket non-blocking: connect goes on in the background.
    let (at, connect) = find(&records, 0, "connect(3, {sa_family=AF_INET, sin_port=htons(");
    assert_eq!(
        connect.note.as_deref(),
        notes::lookup("connect", Some(nix::errno::Errno::EINPROGRESS))
    );
    find(&records, at, "getsockopt(3, SOL_SOCKET, SO_ERROR, [0], [4]) = 0");
    let (_, send) = find(&records, at, "sendto(3, \"hello\", 5, 0, NULL, 0)");
    assert_eq!(send.note, row("send"));
    assert!(
        send.actor.starts_with("python3#"),
        "a thread of its own sends: {send:?}"
    );
    let (_, close) = find(&records, at, "close(3)");
    assert_eq!(
        close.note,
        row("close.tcp"),
        "connected (SO_ERROR said 0), and threads share it"
    );
    let mut actors: Vec<&str> = records.iter().map(|r| r.actor.as_str()).collect();
    actors.sort_unstable();
    actors.dedup();
    assert!(actors.len() >= 3, "the main thread and the two it starts: {actors:?}");
}

#[test]
fn the_exit_status_is_the_commands() {
    util::require("sh");
    let output = explain(&["--trace", "plain", "--", "sh", "-c", "exit 7"], b"");
    assert_eq!(output.status.code(), Some(7), "{output:?}");
    let output = explain(&["--trace", "plain", "--", "sh", "-c", "kill -TERM $$"], b"");
    assert_eq!(
        output.status.code(),
        Some(128 + 15),
        "killed by SIGTERM, as a shell says: {output:?}"
    );
    let stdout = text(&output.stdout);
    assert!(stdout.contains("kill(PID, SIGTERM)"), "plain names the pid:\n{stdout}");
    assert!(
        stdout.lines().any(|l| l.ends_with("+++ killed by SIGTERM +++")),
        "{stdout}"
    );
}

#[test]
fn explains_own_failures_are_one_line_each() {
    let one_line = |output: &Output, status: i32, words: &[&str]| {
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(status), "{output:?}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
        assert!(stderr.starts_with("socklab explain: "), "{stderr:?}");
        for word in words {
            assert!(stderr.contains(word), "{word:?} in {stderr:?}");
        }
        assert!(output.stdout.is_empty(), "nothing on stdout");
    };
    one_line(
        &explain(&["--", "no-such-command-socklab"], b""),
        127,
        &["no-such-command-socklab", "not found"],
    );
    one_line(&explain(&["--bogus", "--", "true"], b""), 125, &["--bogus", "usage"]);

    let empty = std::env::temp_dir().join(format!("socklab-explain-nopath-{}", std::process::id()));
    std::fs::create_dir_all(&empty).expect("an empty directory");
    let mut command = Command::new(chat::socklab());
    command.args(["explain", "--", "true"]).env("PATH", &empty);
    let output = run(command, b"");
    let _ = std::fs::remove_dir(&empty);
    one_line(&output, 125, &["strace is not installed", "make deps"]);

    // A traced process cannot be traced again: under strace -f, explain's strace is refused
    // ptrace, as in a container that forbids it.
    let mut command = Command::new("strace");
    command
        .args(["-f", "-qq", "-o", "/dev/null", "--"])
        .arg(chat::socklab())
        .args(["explain", "--", "true"]);
    one_line(&run(command, b""), 125, &["ptrace", "not permitted"]);
}

#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    util::require("script");
    let socklab = chat::socklab();
    let command = format!("{} explain -- sh -c 'exit 0'", socklab.display());
    let on_a_terminal = |no_color: Option<&str>| {
        // script(1) gives the command a terminal; what it printed comes back on our pipe.
        let mut script = Command::new("script");
        script.args(["-qec", &command, "/dev/null"]).env_remove("NO_COLOR");
        if let Some(value) = no_color {
            script.env("NO_COLOR", value);
        }
        text(&run(script, b"").stdout)
    };
    assert!(on_a_terminal(None).contains("\x1b["), "a terminal gets colour");
    assert!(!on_a_terminal(Some("1")).contains("\x1b["), "NO_COLOR turns it off");
    let mut piped = Command::new(&socklab);
    piped
        .args(["explain", "--", "sh", "-c", "exit 0"])
        .env_remove("NO_COLOR");
    let piped = run(piped, b"");
    assert!(text(&piped.stdout).contains("exit_group(0)"));
    assert!(!text(&piped.stdout).contains('\x1b'), "a pipe gets none");
}
