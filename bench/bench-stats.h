/* bench-stats.h - timing, statistics, memory and RESULT-line helpers shared by
 * every ravel-bench workload.
 *
 * All times come from CLOCK_MONOTONIC, the clock WORKLOADS.md prescribes (and
 * the one rv_now() uses). Memory figures come from /proc/self/status: VmRSS is
 * the resident set now, VmHWM its high-water mark, which bench_rss_reset_peak()
 * rewinds to the current RSS so that each run measures its own peak.
 */
#ifndef RAVEL_BENCH_STATS_H
#define RAVEL_BENCH_STATS_H

#include <stddef.h>
#include <stdint.h>

/* CLOCK_MONOTONIC in nanoseconds. */
int64_t bench_now_ns(void);

/* Median, minimum and maximum of a set of runs. */
typedef struct bench_summary {
    double median;
    double min;
    double max;
} bench_summary;

/* Summarise n >= 1 values; `values` is left untouched. The median of an even
 * count is the mean of the two middle values. */
bench_summary bench_summarize(const double *values, size_t n);
double bench_median(const double *values, size_t n);

/* The p-th percentile (0 <= p <= 100) of n >= 1 latency samples, by the
 * nearest-rank method, so the answer is always one of the samples. Sorts
 * `samples` in place: call it as often as needed, the array stays sorted. */
double bench_percentile(double *samples, size_t n, double p);

/* Resident set size now (VmRSS) and its high-water mark (VmHWM), in bytes;
 * -1 when /proc/self/status cannot be read. */
int64_t bench_rss_current_bytes(void);
int64_t bench_rss_peak_bytes(void);
/* Rewind VmHWM to the current RSS (writes "5" to /proc/self/clear_refs,
 * Linux >= 4.0). Returns 0, or -errno when the kernel refuses. */
int bench_rss_reset_peak(void);
/* Hand memory that the allocators keep cached back to the kernel (jemalloc's
 * arenas when jemalloc is linked, glibc's malloc_trim otherwise), so that a
 * run's RSS baseline does not already contain the previous run's freed pages. */
void bench_release_cached_memory(void);

/* One RESULT line: "RESULT <workload> ravel workers=<n> key=value ...". The
 * line is assembled in a buffer and written with a single printf, so lines of
 * concurrent writers never interleave. */
typedef struct bench_line {
    char text[1024];
    size_t len;
} bench_line;

void bench_line_begin(bench_line *line, const char *workload, unsigned workers);
/* Append " key=value" with `value` printed as "%.<decimals>f". */
void bench_line_add(bench_line *line, const char *key, double value, int decimals);
/* Append " key_min=min key_max=max": the spread of the main metric, whose
 * median was added first with bench_line_add. */
void bench_line_add_range(bench_line *line, const char *key, bench_summary s, int decimals);
/* Print the line on stdout with a newline and flush. */
void bench_line_print(bench_line *line);

#endif
