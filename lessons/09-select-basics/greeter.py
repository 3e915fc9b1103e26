#!/usr/bin/env python3
"""The server listing 15 talks to, in place of the seed's SMTP server (not a seed program).

It takes two connections, greets the second one only (so that select reports one of the
client's two sockets readable, not both), and then holds both open until the client goes.

    python3 greeter.py [PORT]
"""
import socket
import sys

listener = socket.socket()
listener.bind(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 2525))
listener.listen(2)
first, _ = listener.accept()
second, _ = listener.accept()
second.sendall(b"220 hello on your second socket\n")
first.recv(100)  # blocks until the client closes (or is stopped)
for s in (first, second, listener):
    s.close()
