#!/usr/bin/env python3
"""What one wait costs as the descriptors it watches grow: select.select, select.poll and
select.epoll over N idle UDP sockets and one that is ready (lesson 16, in the style of PyMOTW's
select module).

Seed 003 says the cost of select and poll grows linearly with the number of descriptors and
epoll's does not. The idle sockets are real: nobody ever sends to them. The ready one sent
itself a datagram and never reads it, so every wait returns at once with exactly that one; it
is the last, so select and poll look at every idle one first. Each wait is timed many times
and the median printed.

    python3 wait_cost.py            (from the lesson's folder; or make python-16)
"""
import resource
import select
import socket
import statistics
import time

SIZES = (10, 100, 1000, 10000)
# Every wait may sleep this long; none does, one socket being ready.
TIMEOUT_S = 1.0
# Calls timed for each median: many for the quick ones, enough for the slow ones.
MOST_CALLS = 300
FEWEST_CALLS = 20
# select.select takes descriptors below FD_SETSIZE only.
FD_SETSIZE = 1024


def descriptor_limit(wanted):
    """Raises the soft RLIMIT_NOFILE to the hard one if `wanted` needs it; returns the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


def median_us(wait, calls):
    """The median time of `calls` calls of `wait`, in microseconds; each must find one ready."""
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        ready = wait()
        times.append(time.perf_counter() - start)
        if len(ready) != 1:
            raise RuntimeError(f"{len(ready)} ready, not 1")
    return statistics.median(times) * 1e6


def measure(n):
    idle = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n)]
    ready = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ready.bind(("127.0.0.1", 0))
    ready.sendto(b"x", ready.getsockname())  # waits in its queue, never read
    watched = idle + [ready]

    poller = select.poll()
    epoll = select.epoll()
    for sock in watched:
        poller.register(sock, select.POLLIN)
        epoll.register(sock, select.EPOLLIN)

    calls = max(FEWEST_CALLS, min(MOST_CALLS, 30000 // n))
    costs = {}
    if ready.fileno() < FD_SETSIZE:
        costs["select"] = median_us(lambda: select.select(watched, [], [], TIMEOUT_S)[0], calls)
    costs["poll"] = median_us(lambda: poller.poll(TIMEOUT_S * 1000), calls)
    costs["epoll"] = median_us(lambda: epoll.poll(TIMEOUT_S), calls)

    epoll.close()
    for sock in watched:
        sock.close()
    return costs


def main():
    limit = descriptor_limit(max(SIZES) + 16)
    results = {}
    for n in SIZES:
        if n + 16 > limit:
            print(f"N = {n}: skipped, RLIMIT_NOFILE is {limit}")
            continue
        results[n] = measure(n)
        shown = ", ".join(f"{way} {us:.1f} us" for way, us in results[n].items())
        if "select" not in results[n]:
            shown += f" (select.select cannot: fd {n + 3} is past FD_SETSIZE)"
        print(f"N = {n:>5}: {shown}")
    smallest, largest = min(results), max(results)
    for way in ("poll", "epoll"):
        ratio = results[largest][way] / results[smallest][way]
        print(f"{way}: N = {largest} costs {ratio:.1f} times N = {smallest}")


if __name__ == "__main__":
    main()
