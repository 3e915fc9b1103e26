#!/usr/bin/env python3
"""A client for the edge-triggered server (not a seed program): it sends 20000 bytes in one
sendall, reads until all 20000 have come back, then half-closes and waits for the server
to close too.

    python3 epoll_et_client.py [HOST [PORT]]
"""
import socket
import sys

sock = socket.create_connection((sys.argv[1] if len(sys.argv) > 1 else '127.0.0.1',
                                 int(sys.argv[2]) if len(sys.argv) > 2 else 7000))
sock.sendall(b'x' * 20000)
echo = b''
while len(echo) < 20000:
    echo += sock.recv(65536)
print('echoed back:', len(echo), 'bytes')
sock.shutdown(socket.SHUT_WR)
print('after our FIN:', sock.recv(65536))
sock.close()
