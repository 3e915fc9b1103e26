#!/usr/bin/env python3
"""Seed 003's server loop on select.epoll, level-triggered: an echo server in the style of
PyMOTW (seed 003 compares select, poll and epoll in prose and has no epoll code; this is the
loop the lesson's README sketches, made runnable).

The listener and every client are registered once (epoll_ctl ADD: the interest list lives in
the kernel); each ep.poll(10) is one epoll_wait that hands back only what is ready. To make
"level-triggered" visible, the server reads at most READ_SIZE bytes per wake-up: a client's
socket with bytes still unread is reported again by the next epoll_wait, and the next, until
it is drained. A client that closes is unregistered (EPOLL_CTL_DEL) before it is closed.

What is Python's and what is the kernel's: select.epoll() is epoll_create1(EPOLL_CLOEXEC);
register puts the descriptor number in the event's data; ep.poll(10) waits 10 seconds
(10000 ms), and asks for at most 1023 events (FD_SETSIZE - 1) unless told otherwise.

It serves for ever: stop it with Ctrl-C.

    python3 epoll_server.py [PORT]
"""
import select
import socket
import sys

READ_SIZE = 4

server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(('127.0.0.1', int(sys.argv[1]) if len(sys.argv) > 1 else 7000))
server.listen(10)

ep = select.epoll()
ep.register(server.fileno(), select.EPOLLIN)
conns = {}
while True:
    for fd, events in ep.poll(10):
        if fd == server.fileno():
            conn, addr = server.accept()
            print('connected by', addr)
            conns[conn.fileno()] = conn
            ep.register(conn.fileno(), select.EPOLLIN)
        else:
            data = conns[fd].recv(READ_SIZE)
            if data:
                print('fd %d: read %r' % (fd, data))
                conns[fd].sendall(data)
            else:
                print('fd %d: end of file' % fd)
                ep.unregister(fd)
                conns.pop(fd).close()
