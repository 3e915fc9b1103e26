#!/usr/bin/env python3
"""PyMOTW's selectors echo server (selectors_echo_server.py), with an idle timer.

A reactor in twenty lines: each socket is registered with the callback that handles it as the
key's `data` (`accept` for the listener, `read` for a client), and the loop calls
`key.data(key.fileobj, mask)` for each ready socket, as PyMOTW's does. What the port changed:
- the address: 127.0.0.1 and a port from the command line, not localhost:10000;
- a timer, done the selectors way: every client has a deadline (IDLE seconds after it was last
  heard from), the select timeout is the time left to the earliest one, and after the
  callbacks the loop lets go of whoever is past theirs;
- the end: PyMOTW's server stops once its first client has gone; this one serves CLIENTS
  clients (then `accept` unregisters and closes the listener) and stops when nothing is left
  registered, as lesson 17's reactor does.

What is Python's and what is the kernel's: `import socket` imports selectors, which makes one
epoll and closes it to check that epoll works; DefaultSelector() on Linux is an EpollSelector,
one epoll_create1; register is one epoll_ctl(EPOLL_CTL_ADD), unregister one EPOLL_CTL_DEL; each
select(timeout) is one epoll_wait with the timeout in milliseconds (rounded up), or -1 for None.

    python3 selectors_echo_server.py [PORT [IDLE_SECONDS [CLIENTS]]]
"""
import selectors
import socket
import sys
import time

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
IDLE = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
CLIENTS = int(sys.argv[3]) if len(sys.argv) > 3 else 2

mysel = selectors.DefaultSelector()
deadlines = {}  # client socket -> when it is let go unless it speaks
accepted = 0


def let_go(connection, why):
    print('  closing ({})'.format(why))
    del deadlines[connection]
    mysel.unregister(connection)
    connection.close()


def read(connection, mask):
    "Callback for read events"
    client_address = connection.getpeername()
    print('read({})'.format(client_address))
    data = connection.recv(1024)
    if data:
        # A readable client socket has data
        print('  received {!r}'.format(data))
        connection.sendall(data)
        deadlines[connection] = time.monotonic() + IDLE
    else:
        # Interpret empty result as closed connection
        let_go(connection, 'end of file')


def accept(sock, mask):
    "Callback for new connections"
    global accepted
    new_connection, addr = sock.accept()
    print('accept({})'.format(addr))
    new_connection.setblocking(False)
    mysel.register(new_connection, selectors.EVENT_READ, read)
    deadlines[new_connection] = time.monotonic() + IDLE
    accepted += 1
    if accepted == CLIENTS:
        print('  {} clients: no more'.format(CLIENTS))
        mysel.unregister(sock)
        sock.close()


server_address = ('127.0.0.1', PORT)
print('starting up on {} port {}'.format(*server_address))
server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.setblocking(False)
server.bind(server_address)
server.listen(5)

mysel.register(server, selectors.EVENT_READ, accept)

while mysel.get_map():
    # The timer: wait no longer than until the earliest deadline (None: no timer, no limit).
    timeout = None
    if deadlines:
        timeout = max(0, min(deadlines.values()) - time.monotonic())
    print('waiting for I/O')
    for key, mask in mysel.select(timeout=timeout):
        callback = key.data
        callback(key.fileobj, mask)
    now = time.monotonic()
    for connection, deadline in list(deadlines.items()):
        if deadline <= now:
            print('idle({})'.format(connection.getpeername()))
            let_go(connection, 'said nothing for {} s'.format(IDLE))

print('shutting down')
mysel.close()
