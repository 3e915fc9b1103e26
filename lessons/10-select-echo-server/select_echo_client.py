#!/usr/bin/env python3
"""Two connections from one client, in the style of PyMOTW's select_echo_multiclient.py.

Not a seed program: it gives the select echo server two clients at once. Each message is
sent on both sockets, then each socket reads its echo; at the end both close, and the server
sees end of file on each.

    python3 select_echo_client.py [HOST [PORT]]
"""
import socket
import sys

server_address = (sys.argv[1] if len(sys.argv) > 1 else '127.0.0.1',
                  int(sys.argv[2]) if len(sys.argv) > 2 else 33333)
messages = [b'This is the message. ', b'It will be sent ', b'in parts.']

socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM), socket.socket(socket.AF_INET, socket.SOCK_STREAM)]
for s in socks:
    s.connect(server_address)

for message in messages:
    for s in socks:
        print('%s: sending %r' % (s.getsockname(), message))
        s.send(message)
    for s in socks:
        data = s.recv(1024)
        print('%s: received %r' % (s.getsockname(), data))

for s in socks:
    print('closing', s.getsockname())
    s.close()
