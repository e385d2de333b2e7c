/* bench-stats.c - see bench-stats.h. */
#define _GNU_SOURCE
#include "bench-stats.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Runs are few (5 by default), so a sorted copy on the stack is plenty; the
 * cap only guards against an absurd --runs. */
#define SUMMARY_MAX 1024

bench_summary bench_summarize(const double *values, size_t n)
{
    double sorted[SUMMARY_MAX];
    bench_summary s = {0, 0, 0};
    if (n == 0)
        return s;
    if (n > SUMMARY_MAX)
        n = SUMMARY_MAX;
    memcpy(sorted, values, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, compare_doubles);
    s.min = sorted[0];
    s.max = sorted[n - 1];
    s.median = n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    return s;
}

double bench_median(const double *values, size_t n) { return bench_summarize(values, n).median; }

double bench_percentile(double *samples, size_t n, double p)
{
    if (n == 0)
        return 0;
    qsort(samples, n, sizeof *samples, compare_doubles);
    if (p <= 0)
        return samples[0];
    if (p >= 100)
        return samples[n - 1];
    /* Nearest rank: the smallest sample with at least p% of samples <= it. */
    size_t rank = (size_t)((p / 100.0) * (double)n + 0.999999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return samples[rank - 1];
}

/* The value of a "Key:   123 kB" line of /proc/self/status, in bytes. */
static int64_t status_kib_field(const char *key)
{
    char buf[4096];
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t len = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (len <= 0)
        return -1;
    buf[len] = '\0';
    size_t key_len = strlen(key);
    for (char *line = buf; line != NULL;) {
        if (strncmp(line, key, key_len) == 0 && line[key_len] == ':')
            return strtoll(line + key_len + 1, NULL, 10) * 1024;
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return -1;
}

int64_t bench_rss_current_bytes(void) { return status_kib_field("VmRSS"); }

int64_t bench_rss_peak_bytes(void) { return status_kib_field("VmHWM"); }

int bench_rss_reset_peak(void)
{
    int fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = write(fd, "5", 1) == 1 ? 0 : -errno;
    close(fd);
    return rc;
}

/* jemalloc's control interface. Weak, so the bench still links (and skips
 * the purge) when the library was built without jemalloc. */
extern int mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen)
    __attribute__((weak));

void bench_release_cached_memory(void)
{
    if (mallctl) {
        mallctl("thread.tcache.flush", NULL, NULL, NULL, 0);
        /* 4096 is MALLCTL_ARENAS_ALL: every arena at once. */
        mallctl("arena.4096.purge", NULL, NULL, NULL, 0);
    }
    malloc_trim(0);
}

void bench_line_begin(bench_line *line, const char *workload, unsigned workers)
{
    int n =
        snprintf(line->text, sizeof line->text, "RESULT %s ravel workers=%u", workload, workers);
    line->len = n > 0 ? (size_t)n : 0;
}

static void line_append(bench_line *line, const char *fmt, ...)
{
    /* len never passes sizeof text - 1, so there is always room for the NUL;
     * a line that does not fit is cut, not overrun. */
    size_t room = sizeof line->text - line->len;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line->text + line->len, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        line->len += (size_t)n < room ? (size_t)n : room - 1;
}

void bench_line_add(bench_line *line, const char *key, double value, int decimals)
{
    line_append(line, " %s=%.*f", key, decimals, value);
}

void bench_line_add_range(bench_line *line, const char *key, bench_summary s, int decimals)
{
    line_append(line, " %s_min=%.*f %s_max=%.*f", key, decimals, s.min, key, decimals, s.max);
}

void bench_line_print(bench_line *line)
{
    printf("%s\n", line->text);
    fflush(stdout);
}
