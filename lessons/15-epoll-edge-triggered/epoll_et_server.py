#!/usr/bin/env python3
"""An echo server on select.epoll, edge-triggered, in the style of PyMOTW (not in the seeds).

Seed 003: "epoll supports both level-triggered and edge-triggered (which only tells the
process which descriptors have just become ready; it says it once, and if we take no action
it will not tell us again). In theory edge-triggered performs better, but the code is
considerably more complex." The extra code is here: every socket is non-blocking, and each
wake-up reads until the kernel says EAGAIN (BlockingIOError), because no second event comes
for bytes left behind. The listener is drained the same way: accept until BlockingIOError.

What is Python's and what is the kernel's: setblocking(False) is ioctl(FIONBIO) on Linux;
EPOLLET is one more bit in the event mask given to epoll_ctl; BlockingIOError is the EAGAIN
of the recvfrom (or accept4) that ends each drain.

It serves for ever: stop it with Ctrl-C.

    python3 epoll_et_server.py [PORT]
"""
import select
import socket
import sys

server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(('127.0.0.1', int(sys.argv[1]) if len(sys.argv) > 1 else 7000))
server.listen(10)
server.setblocking(False)

ep = select.epoll()
ep.register(server.fileno(), select.EPOLLIN | select.EPOLLET)
conns = {}
while True:
    for fd, events in ep.poll(10):
        if fd == server.fileno():
            while True:  # drain the accept queue
                try:
                    conn, addr = server.accept()
                except BlockingIOError:
                    break
                print('connected by', addr)
                conn.setblocking(False)
                conns[conn.fileno()] = conn
                ep.register(conn.fileno(), select.EPOLLIN | select.EPOLLET)
            continue
        reads, got, closed = 0, b'', False
        while True:  # drain the socket: the edge will not come again for what is left
            try:
                data = conns[fd].recv(4096)
            except BlockingIOError:  # EAGAIN: drained
                break
            reads += 1
            if not data:  # end of file
                closed = True
                break
            got += data
        print('fd %d: one wake-up, %d reads, %d bytes%s' % (fd, reads, len(got), ', then end of file' if closed else ''))
        if got:
            conns[fd].sendall(got)
        if closed:
            ep.unregister(fd)
            conns.pop(fd).close()
