#!/usr/bin/env python3
"""Seed 003's "select can watch at most 1024 descriptors", run in Python, in the style of
PyMOTW (the seed states it; it has no program for it).

It sets RLIMIT_NOFILE's soft limit to 2048 (room past 1024), makes copies of one readable
socket with os.dup until the copy is numbered 1024 (os.dup is fcntl(F_DUPFD_CLOEXEC): Python
makes every new descriptor non-inheritable), and then asks select, poll and epoll about descriptors 1023 and 1024:
- select.select takes 1023 (the kernel sees pselect6 with nfds 1024) but refuses 1024 with
  ValueError before any system call is made: CPython checks FD_SETSIZE itself;
- select.poll and select.epoll take 1024: their kernel interfaces have no such limit.

    python3 fd_wall.py
"""
import os
import resource
import select
import socket

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(2048, hard), hard))
print("RLIMIT_NOFILE: soft", soft, "hard", hard, "-> soft", min(2048, hard))

a, b = socket.socketpair()
b.sendall(b"hello\n")
copies = []
while not copies or copies[-1] < 1024:
    copies.append(os.dup(a.fileno()))
print("dup made copies up to", copies[-1])

below, wall = 1023, 1024
print("select([1023]):", select.select([below], [], [], 5)[0])
try:
    select.select([wall], [], [], 5)
except ValueError as error:
    print("select([1024]): ValueError:", error)

p = select.poll()
p.register(wall, select.POLLIN)
print("poll:", p.poll(5000))

ep = select.epoll()
ep.register(wall, select.EPOLLIN)
print("epoll:", ep.poll(5))
