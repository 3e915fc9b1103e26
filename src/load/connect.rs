//! Opening many connections to an echo server without overflowing its listen backlog.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Connections opened before waiting for the server to take them: below socklab's backlog of
/// 128, so no handshake is ever dropped for a full accept queue (which costs a one-second
/// SYN retransmission and would make setup time noise).
const BATCH: usize = 64;

/// How long a server may take to answer anything before the load calls it stuck.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// Opens `count` connections to the echo server at `server` and makes each prove that the
/// server has accepted it and serves it: one byte sent, the same byte back. The streams are
/// blocking, with Nagle off (a request must not wait for the previous reply's ACK).
///
/// # Errors
/// Which connection failed and how, or which byte did not come back.
pub fn echoed(server: SocketAddr, count: usize) -> Result<Vec<TcpStream>, String> {
    let mut streams = Vec::with_capacity(count);
    while streams.len() < count {
        let first = streams.len();
        for n in first..count.min(first + BATCH) {
            let stream = TcpStream::connect(server).map_err(|e| format!("connect {server} (connection {n}): {e}"))?;
            stream.set_nodelay(true).map_err(|e| format!("TCP_NODELAY: {e}"))?;
            streams.push(stream);
        }
        for (n, mut stream) in streams[first..].iter().enumerate() {
            stream
                .write_all(b"!")
                .map_err(|e| format!("connection {}: first send: {e}", first + n))?;
        }
        for (n, mut stream) in streams[first..].iter().enumerate() {
            let n = first + n;
            stream
                .set_read_timeout(Some(PATIENCE))
                .map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
            let mut byte = [0u8];
            match stream.read(&mut byte) {
                Ok(1) if byte == *b"!" => {}
                Ok(1) => return Err(format!("connection {n}: sent b'!', got {byte:?} back")),
                Ok(_) => return Err(format!("connection {n}: the server closed it before echoing a byte")),
                Err(e) => return Err(format!("connection {n}: waiting for the first echo: {e}")),
            }
            stream.set_read_timeout(None).map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
        }
    }
    Ok(streams)
}
