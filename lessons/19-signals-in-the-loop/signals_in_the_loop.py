#!/usr/bin/env python3
"""Lesson 19 in Python: signal handlers, PEP 475, set_wakeup_fd and asyncio's signal handlers.

    python3 lessons/19-signals-in-the-loop/signals_in_the_loop.py

Three parts in one process, in the PyMOTW style; it ends by itself in well under a second. As in
`make lesson-19`, a second thread ("outside") sends each signal at the moment the main thread
waits in the call the part is about: it reads /proc/self/task/TID/syscall to know, and it
blocks those signals itself, so that the kernel hands them to the main thread.

1. PEP 475 (Python 3.5): SIGUSR1 arrives while accept() waits. Python installs its handlers
   without SA_RESTART, so the kernel fails accept4 with EINTR; Python runs the handler, which
   returns normally, and calls accept4 again: accept() never raises InterruptedError.
2. signal.set_wakeup_fd: Python's own self-pipe. A selectors loop (epoll here) echoes a client
   and watches one end of a socketpair; SIGTERM's C-level handler writes the signal's number to
   the other end, so the loop wakes and stops: a goodbye to the client, close, out.
3. asyncio: loop.add_signal_handler(SIGINT, ...) does the same for you: a socketpair made when
   the loop starts, set_wakeup_fd, and SA_RESTART (signal.siginterrupt(sig, False)).

Run it under strace to see the system calls:

    strace -f -e trace=accept4,epoll_wait,recvfrom,sendto,rt_sigaction,kill,socketpair \\
        python3 lessons/19-signals-in-the-loop/signals_in_the_loop.py
"""
import asyncio
import os
import selectors
import signal
import socket
import threading
import time

GOODBYE = b"server: stopping, goodbye"


def say(text):
    print(text, flush=True)


def wait_until(ready, what):
    """Waits (10 s at most) until ready() is true."""
    for _ in range(10_000):
        if ready():
            return
        time.sleep(0.001)
    raise TimeoutError(what)


def blocked_in(tid, syscall):
    """Waits until thread `tid` waits in system call number `syscall` (/proc/self/task/TID/syscall
    starts with it; `running` while it runs)."""
    def waiting():
        with open(f"/proc/self/task/{tid}/syscall") as status:
            return status.read().split()[0] == str(syscall)
    wait_until(waiting, f"thread {tid} never waited in system call {syscall}")


# x86_64's numbers for the calls the parts interrupt.
SYS_EPOLL_WAIT, SYS_ACCEPT4 = 232, 288


def outside(work):
    """Runs work() on a thread of its own that blocks the signals this program sends: a kill()
    aimed at the process must land on the main thread, the one whose wait it is about."""
    def run():
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGTERM, signal.SIGINT})
        work()
    thread = threading.Thread(target=run, name="outside")
    thread.start()
    return thread


def pep_475(listener):
    say("1. PEP 475: SIGUSR1 while accept() waits")
    handled = []
    signal.signal(signal.SIGUSR1, lambda signum, frame: handled.append(signum))
    main = threading.get_native_id()

    def signal_then_connect():
        blocked_in(main, SYS_ACCEPT4)
        os.kill(os.getpid(), signal.SIGUSR1)
        wait_until(lambda: handled, "the handler never ran")
        blocked_in(main, SYS_ACCEPT4)  # accept4 again: Python retried it
        socket.create_connection(listener.getsockname()).close()

    thread = outside(signal_then_connect)
    conn, _ = listener.accept()
    thread.join()
    say(f"accept() returned a connection; the handler ran {len(handled)} time(s) meanwhile")
    conn.close()


def wakeup_fd_loop(listener):
    say("2. set_wakeup_fd: a selectors loop wakes on SIGTERM")
    wake_read, wake_write = socket.socketpair()
    wake_read.setblocking(False)
    wake_write.setblocking(False)  # set_wakeup_fd insists: a handler must never block
    signal.set_wakeup_fd(wake_write.fileno())
    # The Python-level handler does nothing: the C-level one has already written the byte.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    selector.register(wake_read, selectors.EVENT_READ)
    main = threading.get_native_id()
    heard = []

    def client():
        with socket.create_connection(listener.getsockname()) as sock:
            sock.sendall(b"hello\n")
            heard.append(sock.recv(1024))
            blocked_in(main, SYS_EPOLL_WAIT)
            os.kill(os.getpid(), signal.SIGTERM)
            while data := sock.recv(1024):
                heard.append(data)

    thread = outside(client)
    clients = []
    stopped_by = None
    while stopped_by is None:
        for key, _ in selector.select():
            if key.fileobj is wake_read:
                stopped_by = signal.Signals(wake_read.recv(16)[-1])
            elif key.fileobj is listener:
                conn, _ = listener.accept()
                selector.register(conn, selectors.EVENT_READ)
                clients.append(conn)
            elif data := key.fileobj.recv(1024):
                key.fileobj.sendall(data)
    for conn in clients:
        conn.sendall(GOODBYE + f" ({stopped_by.name})\n".encode())
        selector.unregister(conn)
        conn.close()
    thread.join()
    say(f"{stopped_by.name} stopped the loop; the client heard {heard}")
    signal.set_wakeup_fd(-1)
    selector.close()


async def asyncio_loop():
    loop = asyncio.get_running_loop()
    stopped = loop.create_future()
    loop.add_signal_handler(signal.SIGINT, stopped.set_result, "SIGINT")
    main = threading.get_native_id()

    def interrupt():
        blocked_in(main, SYS_EPOLL_WAIT)
        os.kill(os.getpid(), signal.SIGINT)

    thread = outside(interrupt)
    say(f"asyncio stopped by {await stopped}")
    thread.join()
    loop.remove_signal_handler(signal.SIGINT)


def main():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        pep_475(listener)
        wakeup_fd_loop(listener)
    say("3. asyncio: add_signal_handler(SIGINT, ...)")
    asyncio.run(asyncio_loop())


if __name__ == "__main__":
    main()
