#!/usr/bin/env python3
"""A client for the epoll echo server (not a seed program): it sends one line of 10 bytes,
reads until the whole echo is back (the server sends it in pieces of 4), and closes.

    python3 epoll_client.py [HOST [PORT]]
"""
import socket
import sys

sock = socket.create_connection((sys.argv[1] if len(sys.argv) > 1 else '127.0.0.1',
                                 int(sys.argv[2]) if len(sys.argv) > 2 else 7000))
line = b'abcdefghi\n'
sock.sendall(line)
echo = b''
while len(echo) < len(line):
    echo += sock.recv(1024)
print('echo:', echo)
sock.close()
