#!/usr/bin/env python3
"""Seed 003's select server reduced to an echo server, in the style of PyMOTW's
select_echo_server.py (seed 003 has no echo server; this is its Server.run skeleton, the one
the lesson's README shows, with the chat replaced by an echo).

What is kept from the seed: the listener with SO_REUSEADDR and listen(10); the `inputs` list
that select watches, starting with the listener; a readable listener means accept; a
readable client means recv, and recv returning b'' means the client closed, so it leaves
`inputs` and is closed. What is left out: the seed's output queues and write set (lesson
11), its settimeout/setblocking calls (lesson 08). What changed: print is a function;
the address is 127.0.0.1 and the port comes from the command line (default 33333, the
seed's); the echo is sent at once with sendall, on a blocking socket.

It serves for ever: stop it with Ctrl-C.

    python3 select_echo_server.py [PORT]
"""
import select
import socket
import sys

g_select_timeout = 10

server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(('127.0.0.1', int(sys.argv[1]) if len(sys.argv) > 1 else 33333))
server.listen(10)
inputs = [server]

while True:
    readable, writable, exceptional = select.select(inputs, [], [], g_select_timeout)
    for s in readable:
        if s is server:
            connection, client_address = s.accept()
            print("%s connect." % str(client_address))
            inputs.append(connection)
        else:
            data = s.recv(1024)
            if data:
                s.sendall(data)
            else:
                print("Client:%s Close." % str(s.getpeername()))
                inputs.remove(s)
                s.close()
