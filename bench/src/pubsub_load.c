/*
 * pubsub_load.c - libzmq-based load generator for ZeroMQ pub/sub proxies.
 *
 * Independent peer: written only against libzmq's C API, no project code.
 *
 * Modes:
 *   pubsub_load pub   (--connect EP | --bind EP) [--xpub] [-n N] [-s BYTES] [-k K]
 *                     [--topic-fmt FMT] [--rate MSG_PER_S] [--warmup-ms MS]
 *                     [--wait-subs M] [--wait-timeout-ms MS] [--hwm H] [--linger-ms MS]
 *   pubsub_load sub   (--connect EP | --bind EP) [--sub PREFIX]... [-n N] [-k K]
 *                     [--topic-fmt FMT] [--idle-ms MS] [--timeout-ms MS] [--hwm H]
 *                     [--latency] [--label L] [--progress-ms MS]
 *   pubsub_load stall (--connect EP) [--sub PREFIX]... [--hwm H] [--rcvbuf BYTES]
 *                     [--stall-ms MS]       (connects, subscribes, never reads)
 *   pubsub_load keygen                     (prints "PUBLIC SECRET", a new CURVE key pair in Z85)
 *
 * CURVE (every mode; keys are 40-character Z85 text):
 *   --curve-server-key KEY   be a CURVE client of the server whose public key is KEY, with a
 *                            fresh key pair (zmq_curve_keypair) unless --curve-secret is given
 *   --curve-secret KEY [--curve-public KEY]   our own key pair (the public key is derived from
 *                            the secret one; --curve-public, when given, must match it)
 *   --curve-server           be the CURVE server instead (needs --curve-secret), e.g. a
 *                            publisher that binds in the no-proxy baseline
 *
 * Message = 2 frames: frame0 = topic (e.g. "Bench.t0007."), frame1 = payload.
 * Payload header (little endian, 32 bytes), rest is filler:
 *   u64 global_seq, u64 topic_seq, u64 send_ts_ns (CLOCK_MONOTONIC), u32 topic, u32 magic
 * Topics are assigned round-robin: message i goes to topic i % K, so a subscriber
 * that knows -n/-k/--topic-fmt/--sub can compute exactly how many messages it must
 * receive; loss = expected - received, and per-topic sequence gaps are also counted.
 *
 * Every mode prints one machine-readable line starting with "RESULT " on stdout.
 */
#define _GNU_SOURCE
#include <zmq.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAGIC 0x5042454eu /* "PBEN" */
#define HDR 32
#define MAX_SUBS 64

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) {
    fprintf(stderr, "pubsub_load: %s: %s\n", what, zmq_strerror(zmq_errno()));
    exit(2);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

struct opts {
    const char *mode;
    const char *connect_ep;
    const char *bind_ep;
    int xpub;
    long n;
    int size;
    int k;
    const char *topic_fmt;
    double rate;
    int warmup_ms;
    int wait_subs;
    int wait_timeout_ms;
    int hwm;
    int linger_ms;
    const char *subs[MAX_SUBS];
    int nsubs;
    int idle_ms;
    int timeout_ms;
    int latency;
    const char *label;
    int rcvbuf;
    int stall_ms;
    int progress_ms;
    const char *curve_server_key;
    const char *curve_secret;
    const char *curve_public;
    int curve_server;
};

static void usage(void) {
    fprintf(stderr,
            "usage: pubsub_load pub|sub|stall (--connect EP|--bind EP) [options]\n"
            "  common: -n N (1000000) -k TOPICS (1) --topic-fmt FMT (Bench.t%%04d.) --hwm H (0=unlimited)\n"
            "  pub:    -s PAYLOAD_BYTES (100, min 32) --xpub --rate MSG_PER_S (0=max) --warmup-ms MS (500)\n"
            "          --wait-subs M (xpub only, 1) --wait-timeout-ms MS (10000) --linger-ms MS (60000)\n"
            "  sub:    --sub PREFIX (repeatable, default \"\") --idle-ms MS (2000) --timeout-ms MS (60000)\n"
            "          --latency --label L --progress-ms MS (0=off)\n"
            "  stall:  --sub PREFIX --hwm H --rcvbuf BYTES --stall-ms MS (10000)\n"
            "  CURVE:  --curve-server-key Z85 [--curve-secret Z85 [--curve-public Z85]]  (client)\n"
            "          --curve-server --curve-secret Z85 [--curve-public Z85]             (server)\n"
            "  pubsub_load keygen: prints \"PUBLIC SECRET\" (Z85)\n");
    exit(1);
}

static void parse(int argc, char **argv, struct opts *o) {
    memset(o, 0, sizeof *o);
    o->n = 1000000;
    o->size = 100;
    o->k = 1;
    o->topic_fmt = "Bench.t%04d.";
    o->warmup_ms = 500;
    o->wait_subs = 1;
    o->wait_timeout_ms = 10000;
    o->hwm = 0;
    o->linger_ms = 60000;
    o->idle_ms = 2000;
    o->timeout_ms = 60000;
    o->label = "";
    o->rcvbuf = 0;
    o->stall_ms = 10000;
    if (argc < 2) usage();
    o->mode = argv[1];
    static struct option lo[] = {
        {"connect", 1, 0, 'c'},   {"bind", 1, 0, 'b'},        {"xpub", 0, 0, 'X'},
        {"count", 1, 0, 'n'},     {"size", 1, 0, 's'},        {"topics", 1, 0, 'k'},
        {"topic-fmt", 1, 0, 'F'}, {"rate", 1, 0, 'r'},        {"warmup-ms", 1, 0, 'w'},
        {"wait-subs", 1, 0, 'W'}, {"wait-timeout-ms", 1, 0, 'T'}, {"hwm", 1, 0, 'h'},
        {"linger-ms", 1, 0, 'L'}, {"sub", 1, 0, 'S'},         {"idle-ms", 1, 0, 'i'},
        {"timeout-ms", 1, 0, 't'}, {"latency", 0, 0, 'l'},    {"label", 1, 0, 'a'},
        {"rcvbuf", 1, 0, 'R'},    {"stall-ms", 1, 0, 'z'},    {"progress-ms", 1, 0, 'p'},
        {"curve-server-key", 1, 0, 'K'}, {"curve-secret", 1, 0, 'Y'}, {"curve-public", 1, 0, 'P'},
        {"curve-server", 0, 0, 'V'},
        {0, 0, 0, 0}};
    int c;
    optind = 2;
    while ((c = getopt_long(argc, argv, "n:s:k:", lo, NULL)) != -1) {
        switch (c) {
        case 'c': o->connect_ep = optarg; break;
        case 'b': o->bind_ep = optarg; break;
        case 'X': o->xpub = 1; break;
        case 'n': o->n = atol(optarg); break;
        case 's': o->size = atoi(optarg); break;
        case 'k': o->k = atoi(optarg); break;
        case 'F': o->topic_fmt = optarg; break;
        case 'r': o->rate = atof(optarg); break;
        case 'w': o->warmup_ms = atoi(optarg); break;
        case 'W': o->wait_subs = atoi(optarg); break;
        case 'T': o->wait_timeout_ms = atoi(optarg); break;
        case 'h': o->hwm = atoi(optarg); break;
        case 'L': o->linger_ms = atoi(optarg); break;
        case 'S':
            if (o->nsubs < MAX_SUBS) o->subs[o->nsubs++] = optarg;
            break;
        case 'i': o->idle_ms = atoi(optarg); break;
        case 't': o->timeout_ms = atoi(optarg); break;
        case 'l': o->latency = 1; break;
        case 'a': o->label = optarg; break;
        case 'R': o->rcvbuf = atoi(optarg); break;
        case 'z': o->stall_ms = atoi(optarg); break;
        case 'p': o->progress_ms = atoi(optarg); break;
        case 'K': o->curve_server_key = optarg; break;
        case 'Y': o->curve_secret = optarg; break;
        case 'P': o->curve_public = optarg; break;
        case 'V': o->curve_server = 1; break;
        default: usage();
        }
    }
    if (!o->connect_ep && !o->bind_ep) usage();
    if (o->curve_server && (o->curve_server_key || !o->curve_secret)) {
        fprintf(stderr, "pubsub_load: --curve-server needs --curve-secret and excludes --curve-server-key\n");
        exit(1);
    }
    if ((o->curve_secret || o->curve_public) && !o->curve_server && !o->curve_server_key) {
        fprintf(stderr, "pubsub_load: --curve-secret/--curve-public need --curve-server-key (client) or --curve-server\n");
        exit(1);
    }
    if (o->curve_public && !o->curve_secret) {
        fprintf(stderr, "pubsub_load: --curve-public needs --curve-secret\n");
        exit(1);
    }
    if (o->size < HDR) o->size = HDR;
    if (o->k < 1) o->k = 1;
    if (o->nsubs == 0) o->subs[o->nsubs++] = "";
}

static void check_key(const char *what, const char *key) {
    uint8_t raw[32];
    if (strlen(key) != 40 || !zmq_z85_decode(raw, key)) {
        fprintf(stderr, "pubsub_load: %s: not a 40-character Z85 key\n", what);
        exit(1);
    }
}

/* CURVE options, set before bind/connect. Nothing without any --curve-* flag. */
static void apply_curve(void *s, const struct opts *o) {
    if (!o->curve_server_key && !o->curve_server) return;
    if (!zmq_has("curve")) {
        fprintf(stderr, "pubsub_load: this libzmq was built without CURVE\n");
        exit(2);
    }
    char pub[41], sec[41];
    if (o->curve_secret) {
        check_key("--curve-secret", o->curve_secret);
        memcpy(sec, o->curve_secret, 41);
        if (zmq_curve_public(pub, sec) != 0) die("zmq_curve_public");
        if (o->curve_public && strcmp(o->curve_public, pub) != 0) {
            fprintf(stderr, "pubsub_load: --curve-public does not match --curve-secret (its public key is %s)\n", pub);
            exit(1);
        }
    } else if (zmq_curve_keypair(pub, sec) != 0) {
        die("zmq_curve_keypair");
    }
    if (o->curve_server) {
        int one = 1;
        if (zmq_setsockopt(s, ZMQ_CURVE_SERVER, &one, sizeof one) != 0 ||
            zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, sec, 40) != 0)
            die("zmq_setsockopt CURVE server");
        fprintf(stderr, "pubsub_load %s: CURVE server, public key %s\n", o->mode, pub);
    } else {
        check_key("--curve-server-key", o->curve_server_key);
        if (zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, o->curve_server_key, 40) != 0 ||
            zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, pub, 40) != 0 ||
            zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, sec, 40) != 0)
            die("zmq_setsockopt CURVE client");
        fprintf(stderr, "pubsub_load %s: CURVE client, public key %s, server key %s\n", o->mode, pub,
                o->curve_server_key);
    }
}

static void attach(void *s, const struct opts *o) {
    apply_curve(s, o);
    if (o->bind_ep) {
        if (zmq_bind(s, o->bind_ep) != 0) die("zmq_bind");
    } else {
        if (zmq_connect(s, o->connect_ep) != 0) die("zmq_connect");
    }
}

static char **make_topics(const struct opts *o, size_t **lens) {
    char **t = calloc((unsigned)o->k, sizeof *t);
    *lens = calloc((unsigned)o->k, sizeof **lens);
    for (int i = 0; i < o->k; i++) {
        char buf[256];
        snprintf(buf, sizeof buf, o->topic_fmt, i);
        t[i] = strdup(buf);
        (*lens)[i] = strlen(buf);
    }
    return t;
}

static int run_pub(const struct opts *o) {
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, o->xpub ? ZMQ_XPUB : ZMQ_PUB);
    zmq_setsockopt(s, ZMQ_SNDHWM, &o->hwm, sizeof o->hwm);
    zmq_setsockopt(s, ZMQ_RCVHWM, &o->hwm, sizeof o->hwm);
    zmq_setsockopt(s, ZMQ_LINGER, &o->linger_ms, sizeof o->linger_ms);
    attach(s, o);

    size_t *tlen;
    char **topics = make_topics(o, &tlen);
    uint64_t t_wait0 = now_ns();
    int subs_seen = 0;
    if (o->xpub) {
        int to = 100;
        zmq_setsockopt(s, ZMQ_RCVTIMEO, &to, sizeof to);
        char buf[512];
        while (subs_seen < o->wait_subs) {
            int r = zmq_recv(s, buf, sizeof buf, 0);
            if (r > 0 && buf[0] == 1) subs_seen++;
            if ((now_ns() - t_wait0) / 1000000 > (uint64_t)o->wait_timeout_ms) {
                fprintf(stderr, "pubsub_load pub: only %d/%d subscriptions after %d ms, sending anyway\n",
                        subs_seen, o->wait_subs, o->wait_timeout_ms);
                break;
            }
        }
    }
    uint64_t waited_ms = (now_ns() - t_wait0) / 1000000;
    if (o->warmup_ms > 0) usleep((useconds_t)o->warmup_ms * 1000);

    char *payload = calloc(1, (size_t)o->size);
    memset(payload + HDR, 'x', (size_t)o->size - HDR);
    uint64_t *tseq = calloc((unsigned)o->k, sizeof *tseq);
    uint32_t magic = MAGIC;
    uint64_t t0 = now_ns();
    long sent = 0, eagain = 0;
    double period_ns = o->rate > 0 ? 1e9 / o->rate : 0;
    for (long i = 0; i < o->n; i++) {
        int t = (int)(i % o->k);
        if (period_ns > 0) {
            uint64_t target = t0 + (uint64_t)(period_ns * (double)i);
            uint64_t nw = now_ns();
            if (nw < target) {
                struct timespec ts = {(time_t)(target / 1000000000ull), (long)(target % 1000000000ull)};
                clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
            }
        }
        uint64_t gs = (uint64_t)i, ts = tseq[t]++, stamp = now_ns();
        uint32_t tu = (uint32_t)t;
        memcpy(payload + 0, &gs, 8);
        memcpy(payload + 8, &ts, 8);
        memcpy(payload + 16, &stamp, 8);
        memcpy(payload + 24, &tu, 4);
        memcpy(payload + 28, &magic, 4);
        if (zmq_send(s, topics[t], tlen[t], ZMQ_SNDMORE) < 0) {
            if (zmq_errno() == EAGAIN) { eagain++; continue; }
            die("zmq_send topic");
        }
        if (zmq_send(s, payload, (size_t)o->size, 0) < 0) die("zmq_send payload");
        sent++;
    }
    uint64_t t1 = now_ns();
    zmq_close(s);
    zmq_ctx_term(ctx); /* blocks until queued messages are flushed (bounded by --linger-ms) */
    uint64_t t2 = now_ns();
    double secs = (double)(t1 - t0) / 1e9;
    printf("RESULT mode=pub sent=%ld eagain=%ld subs_seen=%d waited_ms=%llu start_ns=%llu end_ns=%llu "
           "flush_ms=%.1f secs=%.4f msgs_per_s=%.0f\n",
           sent, eagain, subs_seen, (unsigned long long)waited_ms, (unsigned long long)t0,
           (unsigned long long)t1, (double)(t2 - t1) / 1e6, secs, secs > 0 ? sent / secs : 0);
    fflush(stdout);
    return 0;
}

static int prefix_match(const char *topic, size_t tl, const struct opts *o) {
    for (int i = 0; i < o->nsubs; i++) {
        size_t pl = strlen(o->subs[i]);
        if (pl <= tl && memcmp(topic, o->subs[i], pl) == 0) return 1;
    }
    return 0;
}

static int run_sub(const struct opts *o) {
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_SUB);
    zmq_setsockopt(s, ZMQ_RCVHWM, &o->hwm, sizeof o->hwm);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    if (o->rcvbuf > 0) zmq_setsockopt(s, ZMQ_RCVBUF, &o->rcvbuf, sizeof o->rcvbuf);
    for (int i = 0; i < o->nsubs; i++) zmq_setsockopt(s, ZMQ_SUBSCRIBE, o->subs[i], strlen(o->subs[i]));
    attach(s, o);

    size_t *tlen;
    char **topics = make_topics(o, &tlen);
    long expected = 0;
    for (int t = 0; t < o->k; t++)
        if (prefix_match(topics[t], tlen[t], o)) expected += o->n / o->k + (t < o->n % o->k ? 1 : 0);

    uint64_t *next = calloc((unsigned)o->k, sizeof *next);
    uint64_t *lat = o->latency ? malloc(sizeof(uint64_t) * (size_t)(expected > 0 ? expected : 1)) : NULL;
    long nlat = 0, recv = 0, gaps = 0, reorder = 0, bad = 0;
    uint64_t bytes = 0, first = 0, last = 0, start = now_ns(), last_progress = start;
    zmq_msg_t m;
    zmq_msg_init(&m);
    while (recv < expected || expected == 0) {
        uint64_t nw = now_ns();
        int wait_ms;
        if (first) {
            int64_t left = (int64_t)o->idle_ms - (int64_t)((nw - last) / 1000000);
            if (left <= 0) break;
            wait_ms = (int)left;
        } else {
            int64_t left = (int64_t)o->timeout_ms - (int64_t)((nw - start) / 1000000);
            if (left <= 0) break;
            wait_ms = (int)left;
        }
        if (o->progress_ms > 0 && wait_ms > o->progress_ms) wait_ms = o->progress_ms;
        if (first && (int64_t)(nw - start) / 1000000 > o->timeout_ms) break;
        zmq_pollitem_t pi = {s, 0, ZMQ_POLLIN, 0};
        int pr = zmq_poll(&pi, 1, wait_ms);
        if (o->progress_ms > 0 && (now_ns() - last_progress) / 1000000 >= (uint64_t)o->progress_ms) {
            last_progress = now_ns();
            fprintf(stderr, "PROGRESS label=%s t_ms=%llu recv=%ld\n", o->label,
                    (unsigned long long)((last_progress - start) / 1000000), recv);
        }
        if (pr <= 0) continue;
        /* drain everything available without polling again */
        for (;;) {
            if (zmq_msg_recv(&m, s, ZMQ_DONTWAIT) < 0) break;
            size_t tl = zmq_msg_size(&m);
            bytes += tl;
            int more = zmq_msg_more(&m);
            if (!more) { bad++; continue; }
            if (zmq_msg_recv(&m, s, 0) < 0) die("zmq_msg_recv payload");
            uint64_t rt = now_ns();
            size_t pl = zmq_msg_size(&m);
            bytes += pl;
            while (zmq_msg_more(&m)) zmq_msg_recv(&m, s, 0);
            if (pl < HDR) { bad++; continue; }
            const char *p = zmq_msg_data(&m);
            uint64_t ts, stamp;
            uint32_t topic, magic;
            memcpy(&ts, p + 8, 8);
            memcpy(&stamp, p + 16, 8);
            memcpy(&topic, p + 24, 4);
            memcpy(&magic, p + 28, 4);
            if (magic != MAGIC || topic >= (uint32_t)o->k) { bad++; continue; }
            if (!first) first = rt;
            last = rt;
            recv++;
            if (ts > next[topic]) gaps += (long)(ts - next[topic]);
            if (ts < next[topic]) reorder++;
            else next[topic] = ts + 1;
            if (lat && nlat < expected) lat[nlat++] = rt - stamp;
            if (recv >= expected && expected > 0) break;
        }
    }
    zmq_msg_close(&m);
    double secs = first && last > first ? (double)(last - first) / 1e9 : 0;
    long lost = expected - recv;
    printf("RESULT mode=sub label=%s recv=%ld expected=%ld lost=%ld gaps=%ld reorder=%ld bad=%ld "
           "first_ns=%llu last_ns=%llu secs=%.4f msgs_per_s=%.0f MB_per_s=%.2f",
           o->label, recv, expected, lost, gaps, reorder, bad, (unsigned long long)first,
           (unsigned long long)last, secs, secs > 0 ? (recv - 1) / secs : 0,
           secs > 0 ? (double)bytes / secs / 1e6 : 0);
    if (lat && nlat > 0) {
        qsort(lat, (size_t)nlat, sizeof *lat, cmp_u64);
        printf(" lat_p50_us=%.1f lat_p90_us=%.1f lat_p99_us=%.1f lat_p999_us=%.1f lat_max_us=%.1f",
               lat[(size_t)(nlat * 0.50)] / 1e3, lat[(size_t)(nlat * 0.90)] / 1e3,
               lat[(size_t)(nlat * 0.99)] / 1e3, lat[(size_t)(nlat * 0.999)] / 1e3,
               lat[nlat - 1] / 1e3);
    }
    printf("\n");
    fflush(stdout);
    zmq_close(s);
    zmq_ctx_term(ctx);
    return 0;
}

static int run_stall(const struct opts *o) {
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_SUB);
    zmq_setsockopt(s, ZMQ_RCVHWM, &o->hwm, sizeof o->hwm);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    if (o->rcvbuf > 0) zmq_setsockopt(s, ZMQ_RCVBUF, &o->rcvbuf, sizeof o->rcvbuf);
    for (int i = 0; i < o->nsubs; i++) zmq_setsockopt(s, ZMQ_SUBSCRIBE, o->subs[i], strlen(o->subs[i]));
    attach(s, o);
    usleep((useconds_t)o->stall_ms * 1000);
    printf("RESULT mode=stall stalled_ms=%d\n", o->stall_ms);
    fflush(stdout);
    zmq_close(s);
    zmq_ctx_term(ctx);
    return 0;
}

static int run_keygen(void) {
    char pub[41], sec[41];
    if (!zmq_has("curve")) {
        fprintf(stderr, "pubsub_load: this libzmq was built without CURVE\n");
        return 2;
    }
    if (zmq_curve_keypair(pub, sec) != 0) die("zmq_curve_keypair");
    printf("%s %s\n", pub, sec);
    return 0;
}

int main(int argc, char **argv) {
    struct opts o;
    signal(SIGPIPE, SIG_IGN);
    if (argc == 2 && !strcmp(argv[1], "keygen")) return run_keygen();
    parse(argc, argv, &o);
    if (!strcmp(o.mode, "pub")) return run_pub(&o);
    if (!strcmp(o.mode, "sub")) return run_sub(&o);
    if (!strcmp(o.mode, "stall")) return run_stall(&o);
    usage();
    return 1;
}
