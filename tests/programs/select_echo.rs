//! Lesson 10's server mode serves several real clients at once on one thread: two `nc` and two
//! Python clients connect and stay connected, and each gets its own lines echoed, in whatever
//! order they speak. A one-at-a-time server (lesson 01) would leave all but the first waiting.

use crate::util;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

/// How long a peer may take to get its echo before the test fails (a hang guard).
const ECHO_LIMIT: Duration = Duration::from_secs(10);

/// Python's socket module as a line client: each stdin line out, the echo back to stdout.
const PYTHON_CLIENT: &str = "
import socket, sys
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
for line in iter(sys.stdin.readline, ''):
    s.sendall(line.encode())
    got = b''
    while len(got) < len(line.encode()):
        chunk = s.recv(1024)
        if not chunk:
            sys.exit('server closed')
        got += chunk
    sys.stdout.write(got.decode())
    sys.stdout.flush()
s.close()
";

/// A client process: we type into its stdin and read its stdout line by line.
struct Peer {
    name: &'static str,
    child: Child,
    keys: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Peer {
    fn start(name: &'static str, mut command: Command) -> Peer {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let stdout = child.stdout.take().expect("its stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Peer {
            name,
            keys: child.stdin.take(),
            child,
            lines,
        }
    }

    /// Sends `text` as one line and returns what came back.
    fn says(&mut self, text: &str) -> String {
        let keys = self.keys.as_mut().expect("stdin still open");
        writeln!(keys, "{text}").expect("typing into the peer");
        keys.flush().expect("flush");
        self.lines
            .recv_timeout(ECHO_LIMIT)
            .unwrap_or_else(|_| panic!("{} got no echo of {text:?}", self.name))
    }

    /// Closes its stdin and waits for it to finish.
    fn finish(mut self) {
        drop(self.keys.take());
        let output = util::wait_with_deadline(self.child, ECHO_LIMIT);
        assert!(output.status.success(), "{} ended with {}", self.name, output.status);
    }
}

fn nc(port: u16) -> Command {
    let mut command = Command::new("nc");
    // -N: at end of stdin, shut down our sending side, so the server sees end of file.
    command.args(["-N", "127.0.0.1", &port.to_string()]);
    command
}

fn python(port: u16) -> Command {
    let mut command = Command::new("python3");
    command.args(["-c", PYTHON_CLIENT, &port.to_string()]);
    command
}

#[test]
fn four_real_clients_at_once_each_get_their_own_echo() {
    util::require("nc");
    util::require("python3");
    let port = util::free_port();
    let mut server = util::start_lesson_server(10, port, "listening on");

    let mut peers = vec![
        Peer::start("nc#1", nc(port)),
        Peer::start("python#1", python(port)),
        Peer::start("nc#2", nc(port)),
        Peer::start("python#2", python(port)),
    ];
    // All four are connected and none has finished. The last to start speaks first: a server
    // that served one client at a time would still be waiting on nc#1.
    for index in (0..peers.len()).rev() {
        let text = format!("first line from {}", peers[index].name);
        assert_eq!(peers[index].says(&text), text);
    }
    // Interleaved again, and again each gets back exactly its own line.
    for index in [1, 3, 0, 2] {
        let text = format!("{} speaks again", peers[index].name);
        assert_eq!(peers[index].says(&text), text);
    }
    // One leaves in the middle; the others are still served.
    peers.remove(2).finish();
    for index in [2, 0, 1] {
        let text = format!("{} is still here", peers[index].name);
        assert_eq!(peers[index].says(&text), text);
    }
    for peer in peers {
        peer.finish();
    }

    // The server is still up for a new client after all of that.
    let mut late = Peer::start("nc#3", nc(port));
    assert_eq!(late.says("late comer"), "late comer");
    late.finish();

    let _ = server.kill();
    let _ = server.wait();
}
