#!/usr/bin/env python3
"""What sendall is, and a half-close: in the style of PyMOTW (the seeds call sendall and
shutdown but never show what they become).

sendall(data) is a loop around send() that stops when every byte is taken:
- on a blocking socket, Linux's send already waits until all of the data is queued, so the
  loop runs once: one sendto for all of it, which returns when the reader has
  made room for the last of it;
- on a socket with a timeout (settimeout), the socket is non-blocking underneath: Python
  polls for POLLOUT, sendto takes what fits in the buffers and returns that count, and
  Python loops: poll, sendto, poll, sendto... until all is sent.
Then shutdown(SHUT_WR): "I have nothing more to say"; the reader sees end of file (recv
returns b'') and can still answer, and we can still read the answer.

One process plays both ends: a reader thread takes the bytes in 16 KiB reads, a little at a
time, so the writer has to wait for room. Both ends' buffers are made small (SO_SNDBUF,
SO_RCVBUF: 8 KiB asked, 16 KiB kept, lesson 04), or loopback's would swallow the whole
quarter megabyte at once and no send would ever be short.

    python3 sendall.py
"""
import socket
import threading
import time

DATA = b"x" * (256 * 1024)
BUFFER = 8192

listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUFFER)  # accepted sockets inherit it
listener.bind(("127.0.0.1", 0))
listener.listen(1)


def reader(conn, name):
    total = 0
    while True:
        chunk = conn.recv(16384)
        if not chunk:
            break
        total += len(chunk)
        time.sleep(0.001)
    print(name, "read", total, "bytes, then end of file")
    conn.sendall(b"got %d bytes\n" % total)
    conn.close()


for name, timeout in (("blocking", None), ("with a timeout", 5.0)):
    writer = socket.socket()
    writer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUFFER)
    writer.connect(listener.getsockname())
    conn, _ = listener.accept()
    thread = threading.Thread(target=reader, args=(conn, name))
    thread.start()
    writer.settimeout(timeout)
    writer.sendall(DATA)
    writer.shutdown(socket.SHUT_WR)
    print(name, "sendall returned; after the half-close the answer still arrives:", writer.recv(100))
    writer.close()
    thread.join()
listener.close()
