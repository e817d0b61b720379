/*
 * pusher-load: a lean load worker for the bench suite (built by `python -m bench`
 * into bench/bin/pusher-load with the machine's C compiler).
 *
 * One process, one thread, one epoll loop.  Two modes:
 *
 *   ws   Open --conns WebSocket connections to ws://HOST:PORT/PATH (Pusher protocol 7),
 *        wait for pusher:connection_established, send pusher:subscribe for the connection's
 *        channel, wait for pusher_internal:subscription_succeeded.  Then record, for every
 *        channel event whose data string is "bt:<send monotonic ns>:<seq>", the delivery
 *        latency (CLOCK_MONOTONIC now - send time) in a log-linear histogram.
 *   api  Keep --conns HTTP/1.1 keep-alive connections busy with pre-built requests read
 *        from --request-file (requests separated by a line "\n--REQ--\n"), closed loop
 *        (one outstanding request per connection), and count status-200 responses.
 *
 * Control: commands on stdin, one per line: STAT (print the counters), HIST (print the
 * latency histogram), RESET (zero both), SLOW (the --slow connections stop reading),
 * GO <seconds> (api mode: start), STOP (print RESULT and exit).
 * Output: lines "READY {json}", "STAT {json}", "RESULT {json}" on stdout.
 * Every phase is bounded: --connect-timeout for the set-up, --max-time for the whole run.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define RBUF_SIZE (512 * 1024)
#define HIST_BUCKETS 16384

enum state { S_IDLE, S_CONNECTING, S_HANDSHAKE, S_WAIT_EST, S_WAIT_SUB, S_OPEN, S_SLOW, S_DONE,
             S_FAILED, S_API };

struct conn {
    int fd;
    uint8_t state;
    uint8_t slow;
    uint8_t cut;        /* closed by the peer (or reset) after subscribing */
    uint32_t index;
    uint32_t received;  /* channel events received */
    uint32_t pend_len;
    uint8_t *pend;      /* bytes of an incomplete frame / response kept between reads */
    uint64_t t_sent;    /* api mode: when the outstanding request was written */
    uint32_t req_i;
    uint8_t subs_pending;
};

static struct {
    const char *mode, *host, *path, *channel, *channel_fmt, *request_file, *slow_channel, *slow_src;
    int port, conns, channel_offset, slow, slow_rcvbuf, concurrency;
    double connect_timeout, max_time;
    char *srcs[64];
    int nsrc;
} opt;

static struct conn *conns;
static int ep;
static uint8_t rbuf[RBUF_SIZE];
static uint64_t hist[HIST_BUCKETS];
static uint64_t total_received, normal_received, total_bad, n_subscribed, n_failed, n_cut, n_closed_other;
static uint64_t n_inflight, next_to_start, n_settled;
static uint64_t t_start, t_ready, max_lat_ns;
static int ready_reported, slow_mode, api_go;
static char **requests;
static size_t *request_lens;
static int n_requests;
static uint64_t api_ok, api_bad, api_t0, api_t1;
static const uint8_t mask_key[4] = {0x37, 0xfa, 0x21, 0x3d};

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* log-linear buckets: exact below 1024 us, then 512 sub-buckets per power of two (<0.2% error) */
static int bucket_of(uint64_t us) {
    if (us < 1024) return (int)us;
    int e = 63 - __builtin_clzll(us);
    int idx = 1024 + (e - 10) * 512 + (int)((us >> (e - 9)) - 512);
    return idx < HIST_BUCKETS ? idx : HIST_BUCKETS - 1;
}

static void record_latency(uint64_t ns) {
    if (ns > max_lat_ns) max_lat_ns = ns;
    hist[bucket_of(ns / 1000)]++;
}

static void die(const char *msg) {
    fprintf(stderr, "pusher-load: %s: %s\n", msg, strerror(errno));
    exit(2);
}

static void conn_close(struct conn *c, int failed) {
    if (c->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    free(c->pend);
    c->pend = NULL;
    c->pend_len = 0;
    if (c->state < S_OPEN) {
        if (c->state != S_IDLE) n_inflight--;
        n_failed++;
        n_settled++;
        c->state = S_FAILED;
    } else {
        if (!failed) n_closed_other++;
        c->state = S_DONE;
    }
}

/* write all or fail: the messages the worker sends are small and sockets are fresh */
static int send_all(struct conn *c, const void *buf, size_t len) {
    ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
    return n == (ssize_t)len ? 0 : -1;
}

static int send_text(struct conn *c, const char *text, size_t len) {
    uint8_t frame[512];
    size_t h = 0;
    if (len > sizeof(frame) - 14) return -1;
    frame[h++] = 0x81;
    if (len < 126) {
        frame[h++] = 0x80 | (uint8_t)len;
    } else {
        frame[h++] = 0x80 | 126;
        frame[h++] = (uint8_t)(len >> 8);
        frame[h++] = (uint8_t)len;
    }
    memcpy(frame + h, mask_key, 4);
    h += 4;
    for (size_t i = 0; i < len; i++) frame[h + i] = (uint8_t)text[i] ^ mask_key[i & 3];
    return send_all(c, frame, h + len);
}

static int send_control(struct conn *c, uint8_t opcode, const uint8_t *payload, size_t len) {
    uint8_t frame[256];
    if (len > 125) len = 125;
    frame[0] = 0x80 | opcode;
    frame[1] = 0x80 | (uint8_t)len;
    memcpy(frame + 2, mask_key, 4);
    for (size_t i = 0; i < len; i++) frame[6 + i] = payload[i] ^ mask_key[i & 3];
    return send_all(c, frame, 6 + len);
}

static void channel_name(struct conn *c, char *out, size_t size) {
    if (opt.channel_fmt)
        snprintf(out, size, opt.channel_fmt, opt.channel_offset + (int)c->index);
    else
        snprintf(out, size, "%s", opt.channel);
}

static void settle_subscribed(struct conn *c) {
    c->state = S_OPEN;
    n_inflight--;
    n_subscribed++;
    n_settled++;
    if (c->slow && slow_mode) c->state = S_SLOW;
}

static void maybe_report_ready(void) {
    if (!ready_reported && n_settled >= (uint64_t)opt.conns) {
        ready_reported = 1;
        t_ready = now_ns();
        printf("READY {\"subscribed\":%llu,\"failed\":%llu,\"elapsed_s\":%.6f}\n",
               (unsigned long long)n_subscribed, (unsigned long long)n_failed,
               (t_ready - t_start) / 1e9);
        fflush(stdout);
    }
}

static const uint8_t *find(const uint8_t *hay, size_t n, const char *needle) {
    return memmem(hay, n, needle, strlen(needle));
}

static void on_text(struct conn *c, const uint8_t *p, size_t n, uint64_t now) {
    const uint8_t *bt = find(p, n, "\"bt:");
    if (bt) {
        const uint8_t *q = bt + 4, *end = p + n;
        uint64_t t = 0;
        while (q < end && *q >= '0' && *q <= '9') t = t * 10 + (uint64_t)(*q++ - '0');
        c->received++;
        total_received++;
        if (c->slow) return; /* latency and loss are measured on the normal readers */
        normal_received++;
        if (t && now >= t) record_latency(now - t); else total_bad++;
        return;
    }
    if (c->state == S_WAIT_EST && find(p, n, "pusher:connection_established")) {
        char ch[256], msg[400];
        channel_name(c, ch, sizeof ch);
        int len = snprintf(msg, sizeof msg,
                           "{\"event\":\"pusher:subscribe\",\"data\":{\"channel\":\"%s\"}}", ch);
        if (send_text(c, msg, (size_t)len) < 0) { conn_close(c, 1); return; }
        c->subs_pending = 1;
        if (c->slow && opt.slow_channel) {
            len = snprintf(msg, sizeof msg,
                           "{\"event\":\"pusher:subscribe\",\"data\":{\"channel\":\"%s\"}}",
                           opt.slow_channel);
            if (send_text(c, msg, (size_t)len) < 0) { conn_close(c, 1); return; }
            c->subs_pending = 2;
        }
        c->state = S_WAIT_SUB;
        return;
    }
    if (c->state == S_WAIT_SUB && find(p, n, "pusher_internal:subscription_succeeded")) {
        if (--c->subs_pending == 0) settle_subscribed(c);
        return;
    }
    if (find(p, n, "pusher:ping")) {
        static const char pong[] = "{\"event\":\"pusher:pong\",\"data\":{}}";
        if (send_text(c, pong, sizeof pong - 1) < 0) conn_close(c, 1);
        return;
    }
    if (find(p, n, "pusher:error") && c->state < S_OPEN) {
        fprintf(stderr, "pusher-load: conn %u: %.*s\n", c->index, (int)(n > 200 ? 200 : n), p);
        conn_close(c, 1);
    }
}

/* parse complete frames in buf[0..len); return bytes consumed, or -1 to close */
static long parse_frames(struct conn *c, uint8_t *buf, size_t len, uint64_t now) {
    size_t off = 0;
    while (len - off >= 2) {
        uint8_t b0 = buf[off], b1 = buf[off + 1];
        uint8_t opcode = b0 & 0x0f;
        uint64_t plen = b1 & 0x7f;
        size_t h = 2;
        if (plen == 126) {
            if (len - off < 4) break;
            plen = ((uint64_t)buf[off + 2] << 8) | buf[off + 3];
            h = 4;
        } else if (plen == 127) {
            if (len - off < 10) break;
            plen = 0;
            for (int i = 0; i < 8; i++) plen = (plen << 8) | buf[off + 2 + i];
            h = 10;
        }
        if (b1 & 0x80) h += 4; /* servers must not mask; tolerate it by skipping the key */
        if (plen > RBUF_SIZE / 2) return -1;
        if (len - off < h + plen) break;
        uint8_t *payload = buf + off + h;
        if (opcode == 1 || opcode == 0) {
            on_text(c, payload, (size_t)plen, now);
            if (c->fd < 0) return -1;
        } else if (opcode == 9) {
            if (send_control(c, 10, payload, (size_t)plen) < 0) return -1;
        } else if (opcode == 8) {
            return -1;
        }
        off += h + (size_t)plen;
    }
    return (long)off;
}

static void start_connect(struct conn *c) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) { c->state = S_FAILED; n_failed++; n_settled++; return; }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (c->slow && opt.slow_rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &opt.slow_rcvbuf, sizeof opt.slow_rcvbuf);
    const char *src_ip = NULL;
    if (c->slow && opt.slow_src) src_ip = opt.slow_src;
    else if (opt.nsrc > 0) src_ip = opt.srcs[c->index % opt.nsrc];
    if (src_ip) {
        struct sockaddr_in src = {0};
        src.sin_family = AF_INET;
        inet_pton(AF_INET, src_ip, &src.sin_addr);
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) {
            close(fd); c->state = S_FAILED; n_failed++; n_settled++; return;
        }
    }
    struct sockaddr_in dst = {0};
    dst.sin_family = AF_INET;
    dst.sin_port = htons((uint16_t)opt.port);
    inet_pton(AF_INET, opt.host, &dst.sin_addr);
    c->fd = fd;
    c->state = S_CONNECTING;
    n_inflight++;
    int r = connect(fd, (struct sockaddr *)&dst, sizeof dst);
    if (r < 0 && errno != EINPROGRESS) { conn_close(c, 1); return; }
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP, .data.u32 = c->index};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) conn_close(c, 1);
}

static void on_connected(struct conn *c) {
    int err = 0;
    socklen_t el = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err) { conn_close(c, 1); return; }
    char req[1024];
    int len = snprintf(req, sizeof req,
                       "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       "Sec-WebSocket-Version: 13\r\nOrigin: http://%s:%d\r\n\r\n",
                       opt.path, opt.host, opt.port, opt.host, opt.port);
    if (send_all(c, req, (size_t)len) < 0) { conn_close(c, 1); return; }
    c->state = S_HANDSHAKE;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = c->index};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void stop_reading(struct conn *c) {
    /* keep only hang-up/error notifications so a cut-off is still seen */
    struct epoll_event ev = {.events = EPOLLRDHUP, .data.u32 = c->index};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->state = S_SLOW;
}

static void on_readable_ws(struct conn *c, uint64_t now) {
    size_t have = c->pend_len;
    if (have) memcpy(rbuf, c->pend, have);
    ssize_t n = recv(c->fd, rbuf + have, RBUF_SIZE - have, 0);
    now = now_ns(); /* per read, not per epoll batch: a batch can take milliseconds */
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        if (c->state >= S_OPEN) { c->cut = 1; n_cut++; }
        conn_close(c, 1);
        return;
    }
    size_t len = have + (size_t)n;
    long used = 0;
    if (c->state == S_HANDSHAKE) {
        const uint8_t *end = find(rbuf, len, "\r\n\r\n");
        if (!end) { used = 0; goto keep; }
        if (len < 12 || memcmp(rbuf + 9, "101", 3) != 0) {
            fprintf(stderr, "pusher-load: upgrade refused: %.*s\n", (int)(len > 120 ? 120 : len),
                    rbuf);
            conn_close(c, 1);
            return;
        }
        used = (long)(end + 4 - rbuf);
        c->state = S_WAIT_EST;
    }
    long more = parse_frames(c, rbuf + used, len - (size_t)used, now);
    if (more < 0) {
        if (c->fd >= 0) {
            if (c->state >= S_OPEN) { c->cut = 1; n_cut++; }
            conn_close(c, 1);
        }
        return;
    }
    used += more;
keep:
    free(c->pend);
    c->pend = NULL;
    c->pend_len = (uint32_t)(len - (size_t)used);
    if (c->pend_len) {
        c->pend = malloc(c->pend_len);
        memcpy(c->pend, rbuf + used, c->pend_len);
    }
    if (c->fd >= 0 && c->slow && slow_mode && (c->state == S_OPEN || c->state == S_SLOW))
        stop_reading(c);
}

/* ---------------------------------------------------------------- api mode */

static void api_send(struct conn *c, uint64_t now) {
    c->req_i = (c->req_i + 1) % (uint32_t)n_requests;
    c->t_sent = now;
    if (send_all(c, requests[c->req_i], request_lens[c->req_i]) < 0) conn_close(c, 1);
}

static void on_readable_api(struct conn *c, uint64_t now) {
    size_t have = c->pend_len;
    if (have) memcpy(rbuf, c->pend, have);
    ssize_t n = recv(c->fd, rbuf + have, RBUF_SIZE - have, 0);
    now = now_ns();
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        conn_close(c, 1);
        n_cut++;
        return;
    }
    size_t len = have + (size_t)n, off = 0;
    for (;;) {
        const uint8_t *end = find(rbuf + off, len - off, "\r\n\r\n");
        if (!end) break;
        size_t hlen = (size_t)(end + 4 - (rbuf + off));
        long clen = 0;
        const uint8_t *cl = memmem(rbuf + off, hlen, "ontent-Length:", 14);
        if (!cl) cl = memmem(rbuf + off, hlen, "ontent-length:", 14);
        if (cl) clen = strtol((const char *)cl + 14, NULL, 10);
        if (len - off < hlen + (size_t)clen) break;
        int ok = len - off >= 12 && memcmp(rbuf + off + 9, "200", 3) == 0;
        if (api_go) {
            if (ok) api_ok++; else {
                if (api_bad < 3)
                    fprintf(stderr, "pusher-load: api response: %.*s\n",
                            (int)(hlen + (size_t)clen > 300 ? 300 : hlen + (size_t)clen),
                            rbuf + off);
                api_bad++;
            }
            record_latency(now - c->t_sent);
        }
        off += hlen + (size_t)clen;
        if (api_go && now < api_t1) api_send(c, now); else c->state = S_DONE;
        if (c->fd < 0) return;
    }
    free(c->pend);
    c->pend = NULL;
    c->pend_len = (uint32_t)(len - off);
    if (c->pend_len) {
        c->pend = malloc(c->pend_len);
        memcpy(c->pend, rbuf + off, c->pend_len);
    }
}

static void load_requests(void) {
    FILE *f = fopen(opt.request_file, "rb");
    if (!f) die("open request file");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *all = malloc((size_t)size + 1);
    if (fread(all, 1, (size_t)size, f) != (size_t)size) die("read request file");
    all[size] = 0;
    fclose(f);
    requests = calloc(4096, sizeof *requests);
    request_lens = calloc(4096, sizeof *request_lens);
    char *p = all;
    const char *sep = "\n--REQ--\n";
    while (*p && n_requests < 4096) {
        char *q = strstr(p, sep);
        requests[n_requests] = p;
        request_lens[n_requests] = q ? (size_t)(q - p) : strlen(p);
        n_requests++;
        if (!q) break;
        *q = 0;
        p = q + strlen(sep);
    }
    if (!n_requests) { fprintf(stderr, "pusher-load: no requests\n"); exit(2); }
}

/* ---------------------------------------------------------------- control */

static void print_hist_json(FILE *out) {
    fprintf(out, "\"hist\":{");
    int first = 1;
    for (int i = 0; i < HIST_BUCKETS; i++) {
        if (!hist[i]) continue;
        fprintf(out, "%s\"%d\":%llu", first ? "" : ",", i, (unsigned long long)hist[i]);
        first = 0;
    }
    fprintf(out, "}");
}

static void print_counts(FILE *out) {
    uint32_t mn = UINT32_MAX, mx = 0;
    uint64_t slow_cut = 0, normal_cut = 0;
    for (int i = 0; i < opt.conns; i++) {
        struct conn *c = &conns[i];
        if (c->state == S_FAILED) continue;
        if (c->slow) { slow_cut += c->cut; continue; }
        normal_cut += c->cut;
        if (c->received < mn) mn = c->received;
        if (c->received > mx) mx = c->received;
    }
    if (mn == UINT32_MAX) mn = 0;
    fprintf(out,
            "\"received\":%llu,\"normal_received\":%llu,\"bad\":%llu,\"subscribed\":%llu,\"failed\":%llu,\"cut\":%llu,"
            "\"slow_cut\":%llu,\"normal_cut\":%llu,\"closed_other\":%llu,\"min_per_conn\":%u,"
            "\"max_per_conn\":%u,\"max_latency_us\":%llu,\"api_ok\":%llu,\"api_bad\":%llu,"
            "\"api_elapsed_s\":%.6f",
            (unsigned long long)total_received, (unsigned long long)normal_received,
            (unsigned long long)total_bad,
            (unsigned long long)n_subscribed, (unsigned long long)n_failed,
            (unsigned long long)n_cut, (unsigned long long)slow_cut,
            (unsigned long long)normal_cut, (unsigned long long)n_closed_other, mn, mx,
            (unsigned long long)(max_lat_ns / 1000), (unsigned long long)api_ok,
            (unsigned long long)api_bad,
            api_t0 ? ((api_t1 < now_ns() ? api_t1 : now_ns()) - api_t0) / 1e9 : 0.0);
}

static char cmdbuf[4096];
static size_t cmdlen;

/* returns 1 when the worker must exit */
static int on_stdin(void) {
    ssize_t n = read(0, cmdbuf + cmdlen, sizeof cmdbuf - 1 - cmdlen);
    if (n <= 0) return 1; /* the coordinator went away */
    cmdlen += (size_t)n;
    char *nl;
    while ((nl = memchr(cmdbuf, '\n', cmdlen))) {
        *nl = 0;
        if (!strcmp(cmdbuf, "STAT")) {
            printf("STAT {");
            print_counts(stdout);
            printf("}\n");
            fflush(stdout);
        } else if (!strcmp(cmdbuf, "HIST")) {
            printf("HIST {");
            print_hist_json(stdout);
            printf("}\n");
            fflush(stdout);
        } else if (!strcmp(cmdbuf, "SLOW")) {
            slow_mode = 1;
            for (int i = 0; i < opt.conns; i++)
                if (conns[i].slow && conns[i].state == S_OPEN) stop_reading(&conns[i]);
            printf("SLOWED\n");
            fflush(stdout);
        } else if (!strncmp(cmdbuf, "GO ", 3)) {
            double secs = atof(cmdbuf + 3);
            uint64_t now = now_ns();
            api_go = 1;
            api_t0 = now;
            api_t1 = now + (uint64_t)(secs * 1e9);
            for (int i = 0; i < opt.conns; i++)
                if (conns[i].state == S_API) api_send(&conns[i], now);
        } else if (!strcmp(cmdbuf, "STOP")) {
            return 1;
        } else if (!strcmp(cmdbuf, "RESET")) {
            memset(hist, 0, sizeof hist);
            max_lat_ns = 0;
            total_received = 0;
            normal_received = 0;
            total_bad = 0;
            for (int i = 0; i < opt.conns; i++) conns[i].received = 0;
            printf("RESET\n");
            fflush(stdout);
        }
        size_t rest = cmdlen - (size_t)(nl + 1 - cmdbuf);
        memmove(cmdbuf, nl + 1, rest);
        cmdlen = rest;
    }
    return 0;
}

static void usage(void) {
    fprintf(stderr,
            "usage: pusher-load --mode ws|api --host H --port P [--path /app/KEY?protocol=7]\n"
            "  [--conns N] [--channel NAME | --channel-fmt 'bench-%%d' --channel-offset O]\n"
            "  [--src 127.0.0.2,127.0.0.3] [--slow K] [--slow-channel NAME] [--slow-src IP]\n"
            "  [--slow-rcvbuf BYTES]\n"
            "  [--concurrency C]\n"
            "  [--connect-timeout S] [--max-time S] [--request-file F]\n");
    exit(2);
}

int main(int argc, char **argv) {
    opt.mode = "ws";
    opt.host = "127.0.0.1";
    opt.path = "/app/app-key?protocol=7&client=bench&version=1.0";
    opt.channel = "bench";
    opt.conns = 1;
    opt.concurrency = 64;
    opt.connect_timeout = 60;
    opt.max_time = 600;
    opt.slow_rcvbuf = 4096;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) usage();
        i++;
        if (!strcmp(a, "--mode")) opt.mode = v;
        else if (!strcmp(a, "--host")) opt.host = v;
        else if (!strcmp(a, "--port")) opt.port = atoi(v);
        else if (!strcmp(a, "--path")) opt.path = v;
        else if (!strcmp(a, "--conns")) opt.conns = atoi(v);
        else if (!strcmp(a, "--channel")) opt.channel = v;
        else if (!strcmp(a, "--channel-fmt")) opt.channel_fmt = v;
        else if (!strcmp(a, "--channel-offset")) opt.channel_offset = atoi(v);
        else if (!strcmp(a, "--slow")) opt.slow = atoi(v);
        else if (!strcmp(a, "--slow-channel")) opt.slow_channel = v;
        else if (!strcmp(a, "--slow-src")) opt.slow_src = v;
        else if (!strcmp(a, "--slow-rcvbuf")) opt.slow_rcvbuf = atoi(v);
        else if (!strcmp(a, "--concurrency")) opt.concurrency = atoi(v);
        else if (!strcmp(a, "--connect-timeout")) opt.connect_timeout = atof(v);
        else if (!strcmp(a, "--max-time")) opt.max_time = atof(v);
        else if (!strcmp(a, "--request-file")) opt.request_file = v;
        else if (!strcmp(a, "--src")) {
            char *s = strdup(v), *save = NULL;
            for (char *t = strtok_r(s, ",", &save); t && opt.nsrc < 64;
                 t = strtok_r(NULL, ",", &save))
                opt.srcs[opt.nsrc++] = t;
        } else usage();
    }
    if (opt.port <= 0 || opt.conns <= 0 || opt.concurrency <= 0) usage();
    int api = !strcmp(opt.mode, "api");
    if (api && !opt.request_file) usage();
    if (api) load_requests();

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && (rlim_t)opt.conns + 16 > rl.rlim_cur) {
        fprintf(stderr, "pusher-load: %d connections exceed the open-file limit %llu; "
                        "use more worker processes\n", opt.conns,
                (unsigned long long)rl.rlim_cur);
        return 2;
    }

    conns = calloc((size_t)opt.conns, sizeof *conns);
    for (int i = 0; i < opt.conns; i++) {
        conns[i].fd = -1;
        conns[i].index = (uint32_t)i;
        conns[i].slow = i < opt.slow;
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
    struct epoll_event sev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
    epoll_ctl(ep, EPOLL_CTL_ADD, 0, &sev);

    t_start = now_ns();
    uint64_t connect_deadline = t_start + (uint64_t)(opt.connect_timeout * 1e9);
    uint64_t hard_deadline = t_start + (uint64_t)(opt.max_time * 1e9);
    struct epoll_event evs[1024];
    int stop = 0;

    while (!stop) {
        uint64_t now = now_ns();
        if (now > hard_deadline) {
            fprintf(stderr, "pusher-load: --max-time reached\n");
            break;
        }
        /* keep at most --concurrency connections in the set-up phase */
        while (next_to_start < (uint64_t)opt.conns && n_inflight < (uint64_t)opt.concurrency &&
               now < connect_deadline) {
            struct conn *c = &conns[next_to_start++];
            start_connect(c);
        }
        if (!ready_reported && now > connect_deadline) {
            for (int i = 0; i < opt.conns; i++)
                if (conns[i].state < S_OPEN) {
                    if (conns[i].state == S_IDLE) { conns[i].state = S_FAILED; n_failed++;
                                                     n_settled++; }
                    else conn_close(&conns[i], 1);
                }
        }
        maybe_report_ready();
        int n = epoll_wait(ep, evs, 1024, 100);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        now = now_ns();
        for (int i = 0; i < n; i++) {
            uint32_t id = evs[i].data.u32;
            if (id == UINT32_MAX) {
                if (on_stdin()) stop = 1;
                continue;
            }
            struct conn *c = &conns[id];
            if (c->fd < 0) continue;
            uint32_t e = evs[i].events;
            if (c->state == S_CONNECTING) {
                if (e & (EPOLLERR | EPOLLHUP)) { conn_close(c, 1); continue; }
                if (e & EPOLLOUT) {
                    if (api) {
                        int err = 0;
                        socklen_t el = sizeof err;
                        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                        if (err) { conn_close(c, 1); continue; }
                        c->state = S_API;
                        n_inflight--;
                        n_subscribed++;
                        n_settled++;
                        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP,
                                                 .data.u32 = c->index};
                        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                        if (api_go) api_send(c, now);
                    } else {
                        on_connected(c);
                    }
                }
                continue;
            }
            if (c->state == S_SLOW) {
                if (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
                    c->cut = 1;
                    n_cut++;
                    conn_close(c, 1);
                }
                continue;
            }
            if (api) on_readable_api(c, now);
            else on_readable_ws(c, now);
        }
    }
    printf("RESULT {");
    print_counts(stdout);
    printf(",");
    print_hist_json(stdout);
    printf(",\"ready_s\":%.6f}\n", t_ready ? (t_ready - t_start) / 1e9 : -1.0);
    fflush(stdout);
    return 0;
}
