#!/usr/bin/env python3
"""Runs a lesson's Python programs together on loopback: `make python-N`.

    python3 lessons/run_python.py N        (N: a lesson number, with or without the leading zero)

This is stage machinery, not a lesson: it plays the person at the terminals. Each program runs
as its own process, exactly as you would start it in a terminal of its own (`python3 -u`, so
its lines come out at once even into a pipe), from its lesson folder, on 127.0.0.1 and a port
that was free a moment ago. What each program prints comes out prefixed with its name; lines
starting with `»` are this runner saying what it does. The seeds' servers loop forever, so
once the clients are done the runner ends each server by its PID (SIGTERM); every wait is
bounded, and anything still running at the end is killed (SIGKILL, by PID), so a demo always
ends by itself, in a few seconds (a minute at most, on a machine too busy to run it).

`tests/programs/python_programs.rs` runs this same script under `strace -f` and checks the system calls
each lesson's README says the programs make.
"""
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# How long any one wait may take before the demo counts as stuck (each takes well under a
# second on an idle machine; this is room for a busy one).
WAIT_S = 20.0
# How long a whole demo may take: then every program is killed and the runner exits with 1.
DEMO_LIMIT_S = 60.0


class Program:
    """One running program: its process, and the lines it has printed so far."""

    def __init__(self, demo, name, argv, stdin):
        self.demo = demo
        self.name = name
        self.lines = []
        self.changed = threading.Condition()
        self.process = subprocess.Popen(
            [sys.executable, "-u"] + argv,
            cwd=demo.folder,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONIOENCODING="utf-8"),
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        if stdin:
            self.type(stdin)

    def _read(self):
        for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.demo.say(f"{self.name:<9} {line}")
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()
        with self.changed:
            self.lines.append(None)  # end of output
            self.changed.notify_all()

    def type(self, text):
        """Writes `text` to the program's stdin, as if typed."""
        for line in text.splitlines():
            self.demo.say(f"» types {line!r} into {self.name}")
        self.process.stdin.write(text.encode())
        self.process.stdin.flush()

    def end_input(self):
        """Closes the program's stdin: Ctrl-D at a terminal."""
        self.demo.say(f"» end of input (Ctrl-D) for {self.name}")
        self.process.stdin.close()

    def wait_for(self, text, times=1):
        """Waits until the program has printed `times` lines containing `text`."""
        deadline = time.monotonic() + WAIT_S
        with self.changed:
            while sum(1 for line in self.lines if line is not None and text in line) < times:
                left = deadline - time.monotonic()
                if left <= 0 or None in self.lines:
                    raise Stuck(f"{self.name} never printed {text!r} ({times} times)")
                self.changed.wait(left)

    def wait_reaped(self):
        """Waits until the program has reaped every child process it forked: its main thread's
        list of children (/proc/PID/task/PID/children, zombies included) is empty."""
        pid = self.process.pid
        deadline = time.monotonic() + WAIT_S
        while True:
            with open(f"/proc/{pid}/task/{pid}/children") as children:
                if not children.read().split():
                    return
            if time.monotonic() > deadline:
                raise Stuck(f"{self.name} did not reap its children within {WAIT_S} s")
            time.sleep(0.05)

    def wait(self):
        """Waits for the program to exit by itself, and says how it ended."""
        try:
            status = self.process.wait(WAIT_S)
        except subprocess.TimeoutExpired:
            raise Stuck(f"{self.name} did not exit within {WAIT_S} s")
        self.reader.join(WAIT_S)
        self.demo.say(f"» {self.name} {describe(status)}")
        return status

    def stop(self):
        """Ends a server that would run forever, by its PID, as Ctrl-C or `kill` would."""
        self.demo.say(f"» kill {self.process.pid} ({self.name})")
        os.kill(self.process.pid, signal.SIGTERM)
        return self.wait()


class Stuck(Exception):
    pass


# sock_diag(7): the netlink interface `ss` uses to list sockets.
NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY = 4, 20
NLM_F_REQUEST, NLM_F_DUMP, NLMSG_ERROR, NLMSG_DONE = 0x1, 0x300, 2, 3
TCP_TIME_WAIT, TCP_LISTEN = 6, 10


def bound_ports(proto, tcp_state=TCP_LISTEN):
    """The local ports of the IPv4 TCP sockets in `tcp_state` (LISTEN unless told), or of all
    IPv4 UDP sockets.

    Reading /proc/net/tcp would tell the same, but it lists every connection on the machine
    (megabytes, on a machine that just ran a load test); sock_diag filters in the kernel."""
    protocol, states = (socket.IPPROTO_TCP, 1 << tcp_state) if proto == "tcp" else (socket.IPPROTO_UDP, 0xFFFFFFFF)
    # struct inet_diag_req_v2: family, protocol, ext, pad, states, and a zeroed inet_diag_sockid.
    request = struct.pack("=BBBBI48x", socket.AF_INET, protocol, 0, 0, states)
    header = struct.pack("=IHHII", 16 + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
    ports = set()
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as netlink:
        netlink.send(header + request)
        while True:
            data = netlink.recv(65536)
            offset = 0
            while offset + 16 <= len(data):
                length, kind = struct.unpack_from("=IH", data, offset)
                if kind == NLMSG_DONE:
                    return ports
                if kind == NLMSG_ERROR:
                    raise OSError("sock_diag refused the request")
                # struct inet_diag_msg: family, state, timer, retrans, then the id: sport first.
                ports.add(struct.unpack_from("!H", data, offset + 16 + 4)[0])
                offset += (length + 3) & ~3


def describe(status):
    if status < 0:
        return f"ended by {signal.Signals(-status).name}"
    return f"exited with status {status}"


class Demo:
    """The lesson's folder, its programs, and the runner's own voice."""

    def __init__(self, number):
        folders = [f for f in os.listdir(HERE) if f.startswith(f"{number:02}-")]
        if len(folders) != 1:
            sys.exit(f"run_python.py: no lesson {number:02} in {HERE}")
        self.folder = os.path.join(HERE, folders[0])
        self.programs = []
        self.output = threading.Lock()
        self.say(f"» lesson {folders[0]}: its Python, run from {os.path.relpath(self.folder, os.path.dirname(HERE))}")

    def say(self, line):
        with self.output:
            try:
                print(line, flush=True)
            except BrokenPipeError:  # our reader went away (`| head`): carry on, quietly
                sys.stdout = open(os.devnull, "w")

    def start(self, name, *argv, stdin=None):
        """Starts a program; `stdin` is text to type at once ("" keeps the keyboard open)."""
        program = Program(self, name, [str(a) for a in argv], stdin)
        shown = " ".join(str(a) for a in argv)
        self.say(f"» python3 -u {shown}    ({name}, pid {program.process.pid})")
        self.programs.append(program)
        return program

    def run(self, name, *argv, stdin=None):
        """Starts a program and waits for it to exit; returns its exit status."""
        program = self.start(name, *argv, stdin=stdin)
        if stdin is not None:
            program.end_input()
        return program.wait()

    def free_port(self):
        """A port on 127.0.0.1 that was free a moment ago: the kernel picked it for us."""
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        return port

    def wait_until_bound(self, port, proto="tcp"):
        """Waits until some socket listens on (TCP) or is bound to (UDP) port `port`.

        Asks the kernel rather than connecting: a test connection would be a client the seed's
        server serves, and would change what it prints."""
        deadline = time.monotonic() + WAIT_S
        while port not in bound_ports(proto):
            if time.monotonic() > deadline:
                raise Stuck(f"nothing bound port {port} ({proto}) within {WAIT_S} s")
            time.sleep(0.01)

    def pause(self, seconds, why):
        self.say(f"» wait {seconds} s: {why}")
        time.sleep(seconds)

    def give_up(self):
        """The whole demo took too long: kill everything it started, and end."""
        self.kill_leftovers()
        self.say(f"» gave up after {DEMO_LIMIT_S} s")
        os._exit(1)

    def kill_leftovers(self):
        # Last started, first killed: clients before the servers they talk to.
        for program in reversed(self.programs):
            if program.process.poll() is None:
                program.process.kill()
                program.process.wait()
                self.say(f"» kill -9 {program.process.pid} ({program.name}): it was still running")


def lesson_01(demo):
    """Seed 000's echo server (listings 9 and 10): two clients, one at a time."""
    port = demo.free_port()
    server = demo.start("server", "seed_server.py", port)
    demo.wait_until_bound(port)
    demo.run("client#1", "seed_client.py", "127.0.0.1", port)
    demo.run("client#2", "seed_client.py", "127.0.0.1", port)
    server.stop()


def lesson_02(demo):
    """Seed 000's datagram echo (listings 11 and 12), after a client that came too early."""
    port = demo.free_port()
    demo.run("early", "early_client.py", "127.0.0.1", port)
    server = demo.start("server", "seed_server.py", port)
    demo.wait_until_bound(port, "udp")
    demo.run("client#1", "seed_client.py", "127.0.0.1", port)
    demo.run("client#2", "seed_client.py", "127.0.0.1", port)
    server.stop()


def lesson_03(demo):
    """Seed 000's addresses (listings 3 and 5): names, byte order, tuples, IPv6."""
    demo.run("addresses", "addresses.py")


def lesson_04(demo):
    """Seed 001's minimal server, its restart at once (EADDRINUSE), then the options."""
    for _ in range(3):
        port = demo.free_port()
        server = demo.start("server", "seed_server.py", port)
        demo.wait_until_bound(port)
        demo.run("client", "seed_client.py", "127.0.0.1", port)
        server.stop()
        # The server sends and closes at once, so it nearly always closes first and keeps the
        # TIME_WAIT; on a very busy machine the client can exit before the server's close.
        if port in bound_ports("tcp", TCP_TIME_WAIT):
            break
        demo.say("» the client hung up first this time: the TIME_WAIT is on its side; again, on another port")
    else:
        raise Stuck("the server never closed first: no TIME_WAIT on its port")
    demo.say("» the seed's note: after Ctrl-C the same port may need a while; start it again at once")
    demo.run("restart", "seed_server.py", port)
    demo.run("options", "options.py")


def lesson_05(demo):
    """Seed 004's timestamp server, read until end of file; what sendall is."""
    port = demo.free_port()
    server = demo.start("server", "tsTserv.py", port)
    demo.wait_until_bound(port)
    demo.run("client", "tsTclnt.py", "127.0.0.1", port, stdin="Hello\nWorld\n\n")
    server.stop()
    demo.run("sendall", "sendall.py")


def lesson_06(demo):
    """Seed 003's TCP server and client: a good bye, then a server that dies first."""
    port = demo.free_port()
    server = demo.start("server", "seed_server.py", port)
    demo.wait_until_bound(port)
    demo.run("client#1", "seed_client.py", "127.0.0.1", port, stdin="hello\n")
    demo.say("» client#2 connects, and the server is stopped before client#2 says anything")
    client = demo.start("client#2", "seed_client.py", "127.0.0.1", port, stdin="")
    server.wait_for("connected by", 2)
    server.stop()
    client.type("hello?\n")
    client.type("still there?\n")
    client.end_input()
    client.wait()


def lesson_07(demo):
    """Seed 004's SocketServer (plain, then forking) and seed 002's ThreadingTCPServer."""
    for kind in ("tcp", "forking"):
        port = demo.free_port()
        server = demo.start("server", "tsTservSS.py", port, kind)
        demo.wait_until_bound(port)
        demo.run("client", "tsTclntSS.py", "127.0.0.1", port, stdin="a\nc\n\n")
        server.wait_for("connected from", 3)
        if kind == "forking":
            demo.say("» wait until the server has reaped its children (between two turns of its poll loop)")
            server.wait_reaped()
        server.stop()
    port = demo.free_port()
    server = demo.start("server", "seed_server.py", port, stdin="")
    demo.wait_until_bound(port)
    server.type("hi\nhello again\nare you there?\nhello?\n")
    demo.run("client#1", "seed_client.py", "127.0.0.1", port, stdin="hello\nbyebye\n")
    server.wait_for("Bad file descriptor")
    demo.run("client#2", "seed_client.py", "127.0.0.1", port, stdin="hello\n")
    server.wait_for("BrokenPipeError")
    server.stop()


def lesson_08(demo):
    """setblocking, connect_ex, settimeout: one question at a time."""
    demo.run("nonblock", "nonblocking.py")


def lesson_09(demo):
    """Seed 000's listings 14 (select on stdin) and 15 (two sockets, a 5 s timeout)."""
    reader = demo.start("reader", "select_stdin.py", stdin="")
    demo.pause(0.3, "the reader is blocked in select until something is typed")
    reader.type("hello from the keyboard\n")
    reader.end_input()
    reader.wait()
    port = demo.free_port()
    greeter = demo.start("greeter", "greeter.py", port)
    demo.wait_until_bound(port)
    client = demo.start("client", "select_sockets.py", "127.0.0.1", port)
    client.wait_for("Five seconds elapsed.")
    client.stop()
    greeter.wait()


def lesson_10(demo):
    """Seed 003's select loop as an echo server, with two clients at once."""
    port = demo.free_port()
    server = demo.start("server", "select_echo_server.py", port)
    demo.wait_until_bound(port)
    demo.run("client", "select_echo_client.py", "127.0.0.1", port)
    server.wait_for("Close.", 2)
    server.stop()


def lesson_11(demo):
    """Seed 003's select chat server and two of its chat clients."""
    port = demo.free_port()
    server = demo.start("server", "seed_server.py", port)
    demo.wait_until_bound(port)
    ada = demo.start("client#1", "seed_client.py", "127.0.0.1", port, stdin="")
    server.wait_for("connect.", 1)
    bob = demo.start("client#2", "seed_client.py", "127.0.0.1", port, stdin="")
    server.wait_for("connect.", 2)
    ada.type("hello, room\n")
    bob.wait_for("say: hello, room")
    bob.type("hi ada\n")
    ada.wait_for("say: hi ada")
    for client in (ada, bob):
        client.type("exit\n")
        client.end_input()
        client.wait()
    server.wait_for("Close.", 2)
    server.stop()


def lesson_12(demo):
    """select, poll and epoll at descriptor 1024."""
    demo.run("wall", "fd_wall.py")


def lesson_13(demo):
    """An echo server on select.poll, and a client that half-closes."""
    port = demo.free_port()
    server = demo.start("server", "poll_echo_server.py", port)
    demo.wait_until_bound(port)
    demo.run("client", "poll_client.py", "127.0.0.1", port)
    server.wait_for("closing")
    server.stop()


def lesson_14(demo):
    """A level-triggered epoll echo server that reads 4 bytes per wake-up."""
    port = demo.free_port()
    server = demo.start("server", "epoll_server.py", port)
    demo.wait_until_bound(port)
    demo.run("client", "epoll_client.py", "127.0.0.1", port)
    server.wait_for("end of file")
    server.stop()


def lesson_15(demo):
    """An edge-triggered epoll echo server that drains to EAGAIN."""
    port = demo.free_port()
    server = demo.start("server", "epoll_et_server.py", port)
    demo.wait_until_bound(port)
    demo.run("client", "epoll_et_client.py", "127.0.0.1", port)
    server.wait_for("end of file")
    server.stop()


def lesson_16(demo):
    """select.select, select.poll and select.epoll over N idle sockets and one ready."""
    demo.run("costs", "wait_cost.py")


def lesson_17(demo):
    """PyMOTW's selectors echo server with an idle timer: a client that talks, then a silent one."""
    port = demo.free_port()
    server = demo.start("server", "selectors_echo_server.py", port, 0.5, 2)
    demo.wait_until_bound(port)
    demo.run("client#1", "selectors_echo_client.py", "127.0.0.1", port, "This is the message.  ", "It will be repeated.")
    server.wait_for("closing (end of file)")
    demo.say("» client#2 says nothing: the server's timer lets it go after 0.5 s")
    demo.run("client#2", "selectors_echo_client.py", "127.0.0.1", port)
    server.wait()


def lesson_18(demo):
    """A listener hands connections to workers (SCM_RIGHTS); a socket file; datagrams."""
    demo.run("unix", "unix_fd_passing.py")


def lesson_19(demo):
    """PEP 475, set_wakeup_fd with selectors, and asyncio's add_signal_handler."""
    demo.run("signals", "signals_in_the_loop.py")


LESSONS = {
    1: lesson_01,
    2: lesson_02,
    3: lesson_03,
    4: lesson_04,
    5: lesson_05,
    6: lesson_06,
    7: lesson_07,
    8: lesson_08,
    9: lesson_09,
    10: lesson_10,
    11: lesson_11,
    12: lesson_12,
    13: lesson_13,
    14: lesson_14,
    15: lesson_15,
    16: lesson_16,
    17: lesson_17,
    18: lesson_18,
    19: lesson_19,
}


def main():
    if len(sys.argv) != 2 or not sys.argv[1].isdigit() or int(sys.argv[1]) not in LESSONS:
        known = ", ".join(str(n) for n in sorted(LESSONS))
        sys.exit(f"usage: python3 lessons/run_python.py N   (N: {known})")
    demo = Demo(int(sys.argv[1]))
    # SIGTERM (a test's deadline, `kill`) ends the runner through the `finally` below, like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    watchdog = threading.Timer(DEMO_LIMIT_S, demo.give_up)
    watchdog.daemon = True
    watchdog.start()
    try:
        LESSONS[int(sys.argv[1])](demo)
    except Stuck as stuck:
        demo.say(f"» stuck: {stuck}")
        sys.exit(1)
    finally:
        watchdog.cancel()
        demo.kill_leftovers()


if __name__ == "__main__":
    main()
