//! The chat client: one select watches the keyboard (stdin) and the server's socket, where
//! seed 003's `Client` ran a sending thread and a receiving thread.
//!
//! Each line typed is sent as it is; whatever the server sends is written out as it arrives.
//! `exit` is sent like any line (the room treats it as leaving) and end-of-file on stdin
//! becomes a half-close, `shutdown(SHUT_WR)`, which the room sees as end-of-file. Either way
//! the client then only waits for the server to close the connection.

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use nix::sys::socket::{AddressFamily, MsgFlags, Shutdown, SockFlag, SockProtocol, SockType};

use crate::chat::MAX_LINE;
use crate::context::Context;
use crate::sys::select::{self, FdSet};
use crate::sys::{self, Errno};
use crate::trace;

/// After leaving, how long to wait for the server to close its side before giving up on it.
pub const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// How the conversation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// We left (`exit` or end of input) and the server closed the connection.
    Left,
    /// We left, and the server had not closed within [`CLOSE_WAIT`].
    LeftUnanswered,
    /// The server closed the connection while we were still talking.
    ServerClosed,
}

/// Connects to `server`, then relays `input` to it line by line and everything it sends to
/// `output`, until one side leaves. The socket is closed on the way out.
///
/// # Errors
/// One line naming the call that failed: `connect 127.0.0.1:33333: ECONNREFUSED: Connection refused`.
pub fn run(server: SocketAddr, input: BorrowedFd<'_>, output: BorrowedFd<'_>) -> Result<Ending, String> {
    let family = if server.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let socket = sys::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, SockProtocol::Tcp).context("socket")?;
    let result = sys::connect(&socket, server)
        .context(format!("connect {server}"))
        .and_then(|()| talk(&socket, input, output));
    sys::close(socket).context("close")?;
    result
}

/// The select loop. The socket stays blocking: select says when a recv will not block, and
/// a send blocks only while the server's receive buffer is full, which a server that reads
/// everything (as the room does) never lets last.
fn talk(socket: &OwnedFd, input: BorrowedFd<'_>, output: BorrowedFd<'_>) -> Result<Ending, String> {
    let mut typed: Vec<u8> = Vec::new(); // what was typed after the last newline
    let mut leaving = false;
    let mut buf = [0u8; 4096];
    let mut first = [true; 3]; // the first select, read and write get the trace's explanation
    loop {
        // Once we have left, stdin is no longer watched, and the wait is bounded.
        let watch_input = (!leaving).then_some(input);
        let timeout = leaving.then_some(CLOSE_WAIT);
        if std::mem::take(&mut first[0]) {
            trace::explain("one wait for both: what you type and what the room sends (the seed used two threads)");
        }
        let Some((input_ready, socket_ready)) = wait(socket.as_fd(), watch_input, timeout)? else {
            return Ok(Ending::LeftUnanswered);
        };
        if socket_ready {
            match sys::recv(socket, &mut buf, MsgFlags::empty()) {
                Ok(0) if leaving => return Ok(Ending::Left),
                Ok(0) => return Ok(Ending::ServerClosed),
                Ok(n) => {
                    if std::mem::take(&mut first[1]) {
                        trace::explain("the room's lines go to the screen as they arrive");
                    }
                    write_all(output, &buf[..n])?;
                }
                Err(Errno::EINTR) => {}
                Err(error) => return Err(format!("recv: {error}")),
            }
        }
        if input_ready {
            if std::mem::take(&mut first[2]) {
                trace::explain("what you typed: from a terminal, one line per read");
            }
            match sys::read(input, &mut buf) {
                Ok(0) => {
                    // End of input: a last line without its newline is still a line.
                    if !typed.is_empty() {
                        typed.push(b'\n');
                        sys::send_all(socket, &typed, MsgFlags::MSG_NOSIGNAL).context("send")?;
                    }
                    sys::shutdown(socket, Shutdown::Write).context("shutdown")?;
                    leaving = true;
                }
                Ok(n) => {
                    typed.extend_from_slice(&buf[..n]);
                    leaving = send_lines(socket, &mut typed)?;
                }
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                Err(error) => return Err(format!("reading stdin: {error}")),
            }
        }
    }
}

/// Sends every whole line in `typed`, keeping the unfinished rest. Returns true after `exit`
/// (what was typed after it is dropped). A "line" longer than the server accepts is sent
/// without waiting for its newline, so `typed` stays small; the server answers it.
fn send_lines(socket: &OwnedFd, typed: &mut Vec<u8>) -> Result<bool, String> {
    while let Some(end) = typed.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = typed.drain(..=end).collect();
        sys::send_all(socket, &line, MsgFlags::MSG_NOSIGNAL).context("send")?;
        if String::from_utf8_lossy(&line).trim().eq_ignore_ascii_case("exit") {
            typed.clear();
            return Ok(true);
        }
    }
    if typed.len() > MAX_LINE {
        sys::send_all(socket, typed, MsgFlags::MSG_NOSIGNAL).context("send")?;
        typed.clear();
    }
    Ok(false)
}

/// One select on the socket and (unless `None`) the input. `None` back means the timeout
/// passed with nothing ready; otherwise (input ready, socket ready).
fn wait(
    socket: BorrowedFd<'_>,
    input: Option<BorrowedFd<'_>>,
    timeout: Option<Duration>,
) -> Result<Option<(bool, bool)>, String> {
    if !select::fits(socket) || input.is_some_and(|fd| !select::fits(fd)) {
        return Err(format!(
            "select can only watch descriptors 0 to {}",
            select::SETSIZE - 1
        ));
    }
    loop {
        let mut read = FdSet::new();
        read.insert(socket.as_raw_fd());
        if let Some(input) = input {
            read.insert(input.as_raw_fd());
        }
        let mut time_left = timeout.map(|t| select::timeout_ms(i64::try_from(t.as_millis()).unwrap_or(i64::MAX)));
        match select::select(Some(&mut read), None, None, time_left.as_mut()) {
            Ok(0) => return Ok(None),
            Ok(_) => {
                let input_ready = input.is_some_and(|fd| read.contains(fd.as_raw_fd()));
                return Ok(Some((input_ready, read.contains(socket.as_raw_fd()))));
            }
            Err(Errno::EINTR) => continue, // a signal (a resized terminal, say): ask again
            Err(error) => return Err(format!("select: {error}")),
        }
    }
}

/// Writes all of `bytes` to `output` (the terminal, usually), with as many writes as it takes.
fn write_all(output: BorrowedFd<'_>, mut bytes: &[u8]) -> Result<(), String> {
    while !bytes.is_empty() {
        match sys::write(output, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR) => {}
            Err(error) => return Err(format!("writing fd {}: {error}", output.as_raw_fd())),
        }
    }
    Ok(())
}
