#!/usr/bin/env python3
"""A client for the poll echo server, in the style of PyMOTW's echo clients (not a seed
program): it sends two lines, reads each echo, then half-closes (shutdown SHUT_WR sends its
FIN, which the server's poll reports as POLLIN with nothing to read) and reads until the
server closes too.

    python3 poll_client.py [HOST [PORT]]
"""
import socket
import sys

sock = socket.create_connection((sys.argv[1] if len(sys.argv) > 1 else '127.0.0.1',
                                 int(sys.argv[2]) if len(sys.argv) > 2 else 7000))
for line in (b'hello poll\n', b'one more\n'):
    sock.sendall(line)
    print('echo:', sock.recv(1024))
sock.shutdown(socket.SHUT_WR)
print('after our FIN the server closes too: recv gives', sock.recv(1024))
sock.close()
