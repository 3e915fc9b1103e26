#!/usr/bin/env python3
"""Seed 000, listing 14: wait for input on stdin with select, ported to Python 3.

What changed in the port, and why:
- print is a function: print(sys.stdin.read()) for the seed's `print sys.stdin.read()`;
- the imports the listing leaves out (sys, select).

select waits, with no timeout, until fd 0 is readable; then read() reads until end of input
(Ctrl-D at a terminal), so type a few lines and end them with Ctrl-D.

    python3 select_stdin.py
"""
import select
import sys

rlist, wlist, elist = select.select( [sys.stdin], [], [] )

print(sys.stdin.read())
