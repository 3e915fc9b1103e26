#!/usr/bin/env python3
"""PyMOTW's selectors echo client (selectors_echo_client.py).

The same selector, used the other way: no callbacks. The socket is registered with no data,
and the loop looks at the mask itself (read? write?), as mio's users match on a token. It is
registered for reading and writing, sends one message each time the socket is writable, then
switches to read-only (`modify`: EPOLL_CTL_MOD) and reads the echo. What the port changed:
- the address: HOST and PORT from the command line, and the messages too (none: a silent
  client, which only waits for the server to close);
- the end: PyMOTW's client stops at the first bytes it receives (`keep_running = not (data
  or ...)`), which is the whole echo only if it arrives in one piece; this one stops once
  every byte it sent has come back, or when the server closes the connection.

    python3 selectors_echo_client.py HOST PORT [MESSAGE...]
"""
import selectors
import socket
import sys

mysel = selectors.DefaultSelector()
keep_running = True
outgoing = [message.encode() for message in reversed(sys.argv[3:])]
bytes_sent = 0
bytes_received = 0

# Connecting is a blocking operation, so call setblocking()
# after it returns.
server_address = (sys.argv[1], int(sys.argv[2]))
print('connecting to {} port {}'.format(*server_address))
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.connect(server_address)
sock.setblocking(False)

# Set up the selector to watch for when the socket is ready
# to send data as well as when there is data to read.
mysel.register(
    sock,
    selectors.EVENT_READ | selectors.EVENT_WRITE,
)

while keep_running:
    print('waiting for I/O')
    for key, mask in mysel.select(timeout=1):
        connection = key.fileobj
        client_address = connection.getpeername()
        print('client({})'.format(client_address))

        if mask & selectors.EVENT_READ:
            print('  ready to read')
            data = connection.recv(1024)
            if data:
                # A readable client socket has data
                print('  received {!r}'.format(data))
                bytes_received += len(data)
            else:
                print('  the server closed the connection')

            # Interpret empty result as closed connection,
            # and also close when we have received a copy
            # of all of the data sent.
            keep_running = not (
                not data or
                (bytes_received and not outgoing and
                 (bytes_received == bytes_sent))
            )

        if mask & selectors.EVENT_WRITE:
            print('  ready to write')
            if not outgoing:
                # We are out of messages, so we no longer need to write
                # anything. Change our registration to let us keep reading
                # responses from the server.
                print('  switching to read-only')
                mysel.modify(sock, selectors.EVENT_READ)
            else:
                # Send the next message.
                next_msg = outgoing.pop()
                print('  sending {!r}'.format(next_msg))
                sock.sendall(next_msg)
                bytes_sent += len(next_msg)

print('shutting down')
mysel.unregister(connection)
connection.close()
mysel.close()
