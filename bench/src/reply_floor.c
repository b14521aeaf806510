/* reply_floor: what moving one reply of BYTES over loopback TCP costs on this machine, with no
 * proxy and no protocol: a child process writes BYTES each time the parent sends it one byte,
 * and the parent times each round trip until it has read them all. It is the floor under a
 * query answered with as many bytes (memory_bench's `latest` of 10,000 topics: 1.2 MB).
 *
 *   gcc -O2 -Wall -o reply_floor bench/src/reply_floor.c
 *   ./reply_floor [BYTES] [ROUNDS]        default 1228800 1000
 *
 * Prints one line: reply_floor_us bytes B p50 X p90 X p99 X max X (microseconds).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void die(const char *what) {
  perror(what);
  exit(1);
}

int main(int argc, char **argv) {
  long bytes = argc > 1 ? atol(argv[1]) : 1228800;
  int rounds = argc > 2 ? atoi(argv[2]) : 1000;
  if (bytes <= 0 || rounds <= 0) {
    fprintf(stderr, "usage: reply_floor [BYTES] [ROUNDS]\n");
    return 2;
  }
  int one = 1;
  struct sockaddr_in addr = {0};
  socklen_t len = sizeof addr;
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0 ||
      listen(listener, 1) < 0 || getsockname(listener, (struct sockaddr *)&addr, &len) < 0)
    die("listen");
  char *buf = malloc(bytes);
  if (!buf) die("malloc");
  memset(buf, 7, bytes);

  pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    int s = accept(listener, NULL, NULL);
    if (s < 0) die("accept");
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char c;
    while (read(s, &c, 1) == 1) {
      for (long at = 0; at < bytes;) {
        ssize_t w = write(s, buf + at, bytes - at);
        if (w <= 0) die("write");
        at += w;
      }
    }
    return 0;
  }

  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0 || connect(s, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  double *took = malloc(rounds * sizeof *took);
  if (!took) die("malloc");
  for (int r = 0; r < rounds; r++) {
    double start = now_us();
    if (write(s, "?", 1) != 1) die("request");
    for (long at = 0; at < bytes;) {
      ssize_t n = read(s, buf + at, bytes - at);
      if (n <= 0) die("read");
      at += n;
    }
    took[r] = now_us() - start;
  }
  close(s);
  waitpid(child, NULL, 0);
  qsort(took, rounds, sizeof *took, by_value);
  printf("reply_floor_us bytes %ld p50 %.0f p90 %.0f p99 %.0f max %.0f\n", bytes,
         took[rounds / 2], took[rounds * 9 / 10], took[rounds * 99 / 100], took[rounds - 1]);
  return 0;
}
