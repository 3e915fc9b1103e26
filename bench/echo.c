/* The echo server written plainly in C: the reference `make bench` holds socklab's loops against.
 *
 *   echo-c select|poll|epoll|epoll-et [PORT]
 *
 * Listens on 127.0.0.1:PORT (0, the default, lets the kernel choose), says where on stderr, and
 * echoes every client's bytes back to it until killed. One loop per run, each the way a competent
 * C programmer writes it: non-blocking sockets, accept until EAGAIN, a 64 KiB buffer per
 * connection. A client whose echo cannot be written at once is not read from again until it is
 * (backpressure: TCP then slows the client), so no connection ever holds more than its buffer.
 *
 *   select    a master fd_set copied before each call; FD_ISSET over 0..maxfd
 *   poll      one persistent pollfd array; a closed connection's slot takes the last one's
 *   epoll     level-triggered: one read per event, written back at once; on a short write stop
 *             reading and ask for EPOLLOUT (EPOLL_CTL_MOD) until the buffer is drained
 *   epoll-et  edge-triggered: EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET registered once; write until
 *             EAGAIN, read until the input is exhausted: EAGAIN, or a read shorter than asked
 *             (epoll(7)), as socklab's edge-triggered loop does
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE 65536
#define MAX_EVENTS 128

/* One client: the bytes read but not yet written back are buf[start..end). */
struct conn {
    size_t start, end;
    char buf[BUF_SIZE];
};

/* What a read or a write left behind. */
enum state { DRAINED, BLOCKED, CLOSED };

static struct conn **conns; /* indexed by descriptor */
static int max_fds;         /* RLIMIT_NOFILE: no descriptor is this large */

static void die(const char *what) {
    perror(what);
    exit(1);
}

static int listen_on(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) die("setsockopt");
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
    if (listen(fd, SOMAXCONN) < 0) die("listen");
    socklen_t len = sizeof addr;
    if (getsockname(fd, (struct sockaddr *)&addr, &len) < 0) die("getsockname");
    fprintf(stderr, "echo-c: listens on 127.0.0.1:%d\n", ntohs(addr.sin_port));
    return fd;
}

/* accept4 until EAGAIN; returns the next new descriptor, or -1 when none waits. */
static int accept_one(int listener) {
    for (;;) {
        int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            conns[fd] = malloc(sizeof(struct conn));
            if (!conns[fd]) die("malloc");
            conns[fd]->start = conns[fd]->end = 0;
            return fd;
        }
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno != EAGAIN) perror("accept4"); /* EMFILE and the like: try again next wake */
        return -1;
    }
}

static void close_conn(int fd) {
    free(conns[fd]);
    conns[fd] = NULL;
    close(fd);
}

/* Writes what the buffer holds until it is empty or the socket's send buffer is full. */
static enum state flush(int fd, struct conn *c) {
    while (c->start < c->end) {
        ssize_t n = send(fd, c->buf + c->start, c->end - c->start, MSG_NOSIGNAL);
        if (n > 0) {
            c->start += n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            return BLOCKED;
        } else {
            return CLOSED;
        }
    }
    c->start = c->end = 0;
    return DRAINED;
}

/* One read, written back at once. DRAINED also when the read met EAGAIN. */
static enum state echo_once(int fd, struct conn *c) {
    ssize_t n = recv(fd, c->buf, BUF_SIZE, 0);
    if (n == 0) return CLOSED;
    if (n < 0) return (errno == EAGAIN || errno == EINTR) ? DRAINED : CLOSED;
    c->start = 0;
    c->end = n;
    return flush(fd, c);
}

static void serve_select(int listener) {
    fd_set read_set, write_set;
    FD_ZERO(&read_set);
    FD_ZERO(&write_set);
    FD_SET(listener, &read_set);
    int maxfd = listener;
    for (;;) {
        fd_set readable = read_set, writable = write_set;
        if (select(maxfd + 1, &readable, &writable, NULL, NULL) < 0) {
            if (errno == EINTR) continue;
            die("select");
        }
        int last = maxfd;
        for (int fd = 0; fd <= last; fd++) {
            if (fd == listener) {
                if (!FD_ISSET(fd, &readable)) continue;
                int client;
                while ((client = accept_one(listener)) >= 0) {
                    if (client >= FD_SETSIZE) { /* select cannot watch it */
                        close_conn(client);
                        continue;
                    }
                    FD_SET(client, &read_set);
                    if (client > maxfd) maxfd = client;
                }
                continue;
            }
            enum state state;
            if (FD_ISSET(fd, &writable)) {
                state = flush(fd, conns[fd]);
            } else if (FD_ISSET(fd, &readable)) {
                state = echo_once(fd, conns[fd]);
            } else {
                continue;
            }
            if (state == CLOSED) {
                FD_CLR(fd, &read_set);
                FD_CLR(fd, &write_set);
                close_conn(fd);
                while (maxfd > listener && !FD_ISSET(maxfd, &read_set) && !FD_ISSET(maxfd, &write_set)) maxfd--;
            } else if (state == BLOCKED) {
                FD_CLR(fd, &read_set);
                FD_SET(fd, &write_set);
            } else {
                FD_CLR(fd, &write_set);
                FD_SET(fd, &read_set);
            }
        }
    }
}

static void serve_poll(int listener) {
    struct pollfd *fds = calloc(max_fds, sizeof *fds);
    if (!fds) die("calloc");
    nfds_t count = 1;
    fds[0] = (struct pollfd){.fd = listener, .events = POLLIN};
    for (;;) {
        if (poll(fds, count, -1) < 0) {
            if (errno == EINTR) continue;
            die("poll");
        }
        if (fds[0].revents & POLLIN) {
            int client;
            while ((client = accept_one(listener)) >= 0) {
                fds[count++] = (struct pollfd){.fd = client, .events = POLLIN};
            }
        }
        for (nfds_t i = 1; i < count;) {
            struct pollfd *p = &fds[i];
            enum state state;
            struct conn *c = conns[p->fd];
            if (p->revents == 0) {
                i++;
                continue;
            }
            if (c->start < c->end) { /* it was waiting for POLLOUT (or POLLHUP, POLLERR came) */
                state = flush(p->fd, c);
            } else {
                state = echo_once(p->fd, c);
            }
            if (state == CLOSED) {
                close_conn(p->fd);
                *p = fds[--count]; /* the last slot moves here, revents and all: look at it next */
                continue;
            }
            p->events = state == BLOCKED ? POLLOUT : POLLIN;
            i++;
        }
    }
}

static void epoll_add(int ep, int fd, unsigned events) {
    struct epoll_event event = {.events = events, .data.fd = fd};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &event) < 0) die("epoll_ctl ADD");
}

static void epoll_mod(int ep, int fd, unsigned events) {
    struct epoll_event event = {.events = events, .data.fd = fd};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &event) < 0) die("epoll_ctl MOD");
}

static void serve_epoll(int listener) {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    epoll_add(ep, listener, EPOLLIN);
    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int ready = epoll_wait(ep, events, MAX_EVENTS, -1);
        if (ready < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < ready; i++) {
            int fd = events[i].data.fd;
            if (fd == listener) {
                int client;
                while ((client = accept_one(listener)) >= 0) epoll_add(ep, client, EPOLLIN);
                continue;
            }
            struct conn *c = conns[fd];
            if (c->start < c->end) { /* it was waiting for EPOLLOUT */
                enum state state = flush(fd, c);
                if (state == CLOSED) close_conn(fd);
                else if (state == DRAINED) epoll_mod(ep, fd, EPOLLIN);
                continue;
            }
            enum state state = echo_once(fd, c);
            if (state == CLOSED) close_conn(fd); /* close takes it out of the interest list */
            else if (state == BLOCKED) epoll_mod(ep, fd, EPOLLOUT);
        }
    }
}

/* Edge-triggered: each event is heard once, so go on until the input is exhausted. EAGAIN says
 * so; so does, for a stream socket, a read that returned less than asked (epoll(7)), which saves
 * a recv per message. Not once the peer has shut down its side (EPOLLRDHUP): the end-of-file
 * behind its last bytes brings no new edge, so then read on until the 0. */
static enum state echo_until_exhausted(int fd, struct conn *c, int peer_done) {
    int exhausted = 0;
    for (;;) {
        enum state state = flush(fd, c);
        if (state != DRAINED || exhausted) return state; /* BLOCKED: the EPOLLOUT edge brings us back */
        ssize_t n = recv(fd, c->buf, BUF_SIZE, 0);
        if (n > 0) {
            c->start = 0;
            c->end = n;
            exhausted = n < BUF_SIZE && !peer_done;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            return DRAINED;
        } else {
            return CLOSED;
        }
    }
}

static void serve_epoll_et(int listener) {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    epoll_add(ep, listener, EPOLLIN | EPOLLET);
    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int ready = epoll_wait(ep, events, MAX_EVENTS, -1);
        if (ready < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < ready; i++) {
            int fd = events[i].data.fd;
            if (fd == listener) {
                int client;
                while ((client = accept_one(listener)) >= 0) {
                    epoll_add(ep, client, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
                }
                continue;
            }
            int peer_done = events[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR);
            if (echo_until_exhausted(fd, conns[fd], peer_done) == CLOSED) close_conn(fd);
        }
    }
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: echo-c select|poll|epoll|epoll-et [PORT]\n");
        return 2;
    }
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) < 0) die("getrlimit");
    max_fds = (int)limit.rlim_cur;
    conns = calloc(max_fds, sizeof *conns);
    if (!conns) die("calloc");
    int listener = listen_on(argc == 3 ? atoi(argv[2]) : 0);
    const char *loop = argv[1];
    if (strcmp(loop, "select") == 0) serve_select(listener);
    else if (strcmp(loop, "poll") == 0) serve_poll(listener);
    else if (strcmp(loop, "epoll") == 0) serve_epoll(listener);
    else if (strcmp(loop, "epoll-et") == 0) serve_epoll_et(listener);
    fprintf(stderr, "echo-c: no loop called %s; choose select, poll, epoll or epoll-et\n", loop);
    return 2;
}
