#!/usr/bin/env python3
"""An echo server on select.poll, in the style of PyMOTW's select_poll.py.

Seed 003 describes poll in prose only ("not essentially different from select, but no limit
on the number of descriptors"), so this is seed 003's server loop written with poll, the
way PyMOTW writes it: one poll object holds every socket with the events it asks about
(READ_ONLY, or READ_WRITE while an echo waits to be sent: write interest only while output
waits, as in lesson 11); poll returns (fd, event) pairs; a client is unregistered before
it is closed (forget it and poll answers POLLNVAL for the stale number).

What is Python's and what is the kernel's: select.poll() makes no system call; register and
modify only change an array in Python's memory; each p.poll(timeout_ms) is one poll(2) with
the whole array, and milliseconds, not select's seconds.

It serves for ever: stop it with Ctrl-C.

    python3 poll_echo_server.py [PORT]
"""
import queue
import select
import socket
import sys

READ_ONLY = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR
READ_WRITE = READ_ONLY | select.POLLOUT
TIMEOUT_MS = 5000

server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.setblocking(False)
server.bind(('127.0.0.1', int(sys.argv[1]) if len(sys.argv) > 1 else 7000))
server.listen(5)

message_queues = {}
poller = select.poll()
poller.register(server, READ_ONLY)
fd_to_socket = {server.fileno(): server}

while True:
    for fd, flag in poller.poll(TIMEOUT_MS):
        s = fd_to_socket[fd]
        if flag & (select.POLLIN | select.POLLPRI):
            if s is server:
                connection, client_address = s.accept()
                print('connection from', client_address)
                connection.setblocking(False)
                fd_to_socket[connection.fileno()] = connection
                poller.register(connection, READ_ONLY)
                message_queues[connection] = queue.Queue()
            else:
                data = s.recv(1024)
                if data:
                    print('received %r from %s' % (data, s.getpeername()))
                    message_queues[s].put(data)
                    poller.modify(s, READ_WRITE)
                else:
                    print('closing', s.getpeername(), 'after reading no data (its FIN)')
                    poller.unregister(s)
                    del fd_to_socket[fd]
                    s.close()
                    del message_queues[s]
        elif flag & select.POLLHUP:
            print('closing', s.getpeername(), 'after POLLHUP')
            poller.unregister(s)
            del fd_to_socket[fd]
            s.close()
        elif flag & select.POLLOUT:
            try:
                next_msg = message_queues[s].get_nowait()
            except queue.Empty:
                poller.modify(s, READ_ONLY)
            else:
                s.send(next_msg)
        elif flag & select.POLLERR:
            print('handling exceptional condition for', s.getpeername())
            poller.unregister(s)
            del fd_to_socket[fd]
            s.close()
            del message_queues[s]
