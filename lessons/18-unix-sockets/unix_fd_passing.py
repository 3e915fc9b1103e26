#!/usr/bin/env python3
"""Lesson 18 in Python: a listener hands each connection to a worker process.

    python3 lessons/18-unix-sockets/unix_fd_passing.py

The same demo as `make lesson-18`, with Python's socket module (3.9 or later, for send_fds and
recv_fds): a listener on an AF_UNIX path forks two workers, each with a socketpair of its own;
it accepts each client, asks the kernel who connected (SO_PEERCRED), and sends the connection
to a worker with SCM_RIGHTS; the worker, which never called accept, serves it. Then the
socket's file outlives its socket, and datagrams go to an abstract name. Everything happens in
a private directory that mkdtemp made, removed at the end; every process is forked here and
waited for, and the program ends by itself in well under a second.

Run it under strace to see the system calls the Rust lesson shows:

    strace -f -e trace=socketpair,bind,listen,accept4,connect,getsockopt,sendmsg,recvmsg,unlink \\
        python3 lessons/18-unix-sockets/unix_fd_passing.py
"""
import errno
import os
import socket
import stat
import struct
import sys
import tempfile

WORKERS = 2
# struct ucred: pid, uid, gid, three C ints.
UCRED = struct.Struct("3i")


def say(text):
    """One line in one write, flushed: several processes share this stdout, and a child that
    ends with os._exit never flushes what it buffered."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def peer_credentials(sock):
    """SO_PEERCRED: who is at the other end, as the kernel recorded it."""
    return UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, UCRED.size))


def what_is(fd):
    """socket:[inode], from /proc: the same in every process holding the socket."""
    return os.readlink(f"/proc/self/fd/{fd}")


def worker(number, ours, line, earlier_lines):
    """Wait on the line for a connection, serve it to the end; again, until the line closes."""
    ours.close()  # the listener's end of our line
    for other in earlier_lines:  # other workers' lines, inherited by fork
        other.close()
    while True:
        data, fds, _flags, _addr = socket.recv_fds(line, 1, 1)
        if not data:
            say(f"worker#{number}: the listener closed our line")
            return
        # socket(fileno=...) asks the kernel what the descriptor is (SO_DOMAIN, SO_TYPE, SO_PROTOCOL).
        with socket.socket(fileno=fds[0]) as conn:
            say(f"worker#{number}: fd {conn.fileno()} is {what_is(conn.fileno())}")
            while chunk := conn.recv(1024):
                conn.sendall(chunk)


def client(number, path, text):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        sock.sendall(text)
        say(f"client#{number}: the server echoed {sock.recv(1024)!r}")
        pid, _uid, _gid = peer_credentials(sock)
        say(f"client#{number}: the server is pid {pid} (my parent: {pid == os.getppid()})")


def forked(body, *args):
    """Runs body(*args) in a child process, which ends with it; returns the child's pid."""
    sys.stdout.flush()  # or the child inherits a copy of what is buffered
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            body(*args)
        except Exception as error:
            say(f"child {os.getpid()}: {error!r}")
            code = 1
        os._exit(code)
    return pid


def wait(pid):
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"child {pid} failed"


def hand_over(path):
    say("1. a listener hands each connection to a worker process (SCM_RIGHTS)")
    lines, workers = [], []
    for number in range(1, WORKERS + 1):
        ours, theirs = socket.socketpair()
        workers.append(forked(worker, number, ours, theirs, tuple(lines)))
        theirs.close()
        lines.append(ours)

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(5)
    say(f"listener: {os.path.basename(path)} is a socket file: {stat.S_ISSOCK(os.stat(path).st_mode)}")
    for number, line in enumerate(lines, 1):
        client_pid = forked(client, number, path, b"hello %d\n" % number)
        conn, _ = listener.accept()
        pid, uid, gid = peer_credentials(conn)
        say(f"listener: peer pid {pid} uid {uid} gid {gid} (the client we forked: {pid == client_pid})")
        say(f"listener: fd {conn.fileno()} is {what_is(conn.fileno())}")
        socket.send_fds(line, [b"x"], [conn.fileno()])
        conn.close()
        wait(client_pid)
    for line in lines:
        line.close()
    for pid in workers:
        wait(pid)
    listener.close()


def file_outlives_socket(path):
    say(f"2. the file is still there after close: {os.path.exists(path)}")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(path)
        except ConnectionRefusedError:
            say("connect: ECONNREFUSED, nobody listens behind the file")
        try:
            sock.bind(path)
        except OSError as error:
            assert error.errno == errno.EADDRINUSE
            say("bind: EADDRINUSE until the file is unlinked")
        os.unlink(path)
        sock.bind(path)
    os.unlink(path)


def datagrams(name):
    say("3. datagrams on an abstract name: no file, kept whole, never dropped")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver, \
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
        receiver.bind(name)
        for word in (b"one", b"two", b"three"):
            sender.sendto(word, name)
        say(f"received: {[receiver.recv(64) for _ in range(3)]}")
        sender.setblocking(False)
        queued = 0
        try:
            while queued < 10_000:
                sender.sendto(b"x", name)
                queued += 1
        except BlockingIOError:
            say(f"{queued} datagrams queued, then EAGAIN: the queue is full, nothing was dropped")
        receiver.close()
        try:
            sender.sendto(b"x", name)
        except ConnectionRefusedError:
            say("after the receiver closed: ECONNREFUSED, the name went with its socket")


def main():
    private = tempfile.mkdtemp(prefix="socklab-18.")
    try:
        path = os.path.join(private, "echo.sock")
        hand_over(path)
        file_outlives_socket(path)
        # A leading NUL byte makes the name abstract: strace prints it as @"socklab-18.…".
        datagrams("\0" + os.path.basename(private))
    finally:
        for leftover in os.listdir(private):
            os.unlink(os.path.join(private, leftover))
        os.rmdir(private)


if __name__ == "__main__":
    main()
