#!/usr/bin/env python3
"""Non-blocking sockets in Python, in the style of PyMOTW: seed 003's setblocking and
settimeout lines and seed 004's "blocking-oriented socket methods", run one by one.

The seeds have no program for this (seed 003 calls setblocking(False) and settimeout() in
its chat server; seed 004 lists setblocking, settimeout, gettimeout and connect_ex), so this
one asks each question in turn, on 127.0.0.1 only, in one process:

1. setblocking(False) on a listener with nobody waiting: accept raises BlockingIOError at
   once (the kernel said EAGAIN). On Linux CPython sets the flag with ioctl(FIONBIO), not
   fcntl(O_NONBLOCK); both set the same O_NONBLOCK bit.
2. connect_ex on a non-blocking socket: EINPROGRESS returned as a number, not raised; wait
   for writable with select, then read SO_ERROR: 0 means connected.
3. the accepted socket is blocking again (Linux does not copy O_NONBLOCK from the listener),
   so seed 003 calls setblocking(0) on it; recv with nothing there: BlockingIOError.
4. seed 003's order: setblocking(False), then settimeout(2). The second call replaces the
   first (setblocking(False) is settimeout(0.0)): gettimeout() says 2.0, and accept no longer
   fails at once but waits in poll() for up to the timeout, then raises TimeoutError. The
   kernel's flag is the same in both modes; only what Python does around each call differs.

    python3 nonblocking.py
"""
import errno
import select
import socket

listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(5)

# 1. A non-blocking listener with nothing queued
listener.setblocking(False)
print("1. gettimeout() after setblocking(False):", listener.gettimeout())
try:
    listener.accept()
except BlockingIOError as error:
    print("   accept with nobody waiting:", type(error).__name__, errno.errorcode[error.errno])

# 2. A non-blocking connect
client = socket.socket()
client.setblocking(False)
result = client.connect_ex(listener.getsockname())
print("2. connect_ex:", errno.errorcode.get(result, result))
_, writable, _ = select.select([], [client], [], 5)
print("   select says writable:", writable == [client],
      " SO_ERROR =", client.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))

# 3. The accepted socket, and a recv with nothing to read
conn, _ = listener.accept()
print("3. the accepted socket's timeout:", conn.gettimeout(), "(blocking: nothing inherited)")
conn.setblocking(0)
try:
    conn.recv(100)
except BlockingIOError as error:
    print("   recv with nothing there:", type(error).__name__, errno.errorcode[error.errno])

# 4. Seed 003's order: setblocking(False) then settimeout()
listener.settimeout(0.05)
print("4. gettimeout() after settimeout(0.05):", listener.gettimeout())
try:
    listener.accept()
except socket.timeout as error:
    print("   accept with nobody waiting:", type(error).__name__, error)

for s in (conn, client, listener):
    s.close()
