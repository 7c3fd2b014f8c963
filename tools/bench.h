/* Shared pieces of lacuna-bench: measurement, machine description, running a case in a child. */
#ifndef LACUNA_BENCH_H
#define LACUNA_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define KIB 1024ul
#define MIB (1024ul * 1024ul)

uint64_t bench_now_ns(void);
long bench_rss_kib(void);                 /* /proc/self/statm resident */
long bench_status_kib(const char *field); /* e.g. "VmHWM:" from /proc/self/status */
long bench_vmas(void);                    /* lines of /proc/self/maps */
long bench_minflt(void);
void bench_machine(FILE *out, const char *prefix); /* CPU, cores, kernel, compiler: one line */
int bench_parse_size(const char *s, size_t *out);  /* 64K, 1M, 1G, plain bytes; 0 or EINVAL */
double bench_median(double *v, int n);
void bench_progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Run fn(arg, out) in a forked child so each case starts from a clean process (peak RSS, VMAs);
 * the child fills *out (size bytes) which is copied back. Returns 0, or -1 if the child died. */
int bench_in_child(void (*fn)(void *arg, void *out), void *arg, void *out, size_t size);

/* churn.c: one configuration, measured as the median of runs after a warm-up. */
typedef struct churn_cfg {
    const char *backend;
    size_t region, live, cycles, touch, threads;
    size_t cross; /* percent of cycles that free a region from the whole (shared) live set */
} churn_cfg;

typedef struct churn_result {
    double ns_per_cycle;
    long peak_rss_kib, end_rss_kib, vmas_peak, minflt;
    uint64_t release_calls, released_regions;
    long failed_at; /* live regions reached when an allocation failed, or -1 */
    int err;
} churn_result;

int churn_measure(const churn_cfg *cfg, int runs, churn_result *med, double *min, double *max);
void churn_csv_header(FILE *out);
void churn_csv_row(FILE *out, const churn_cfg *cfg, const churn_result *r, double mn, double mx);

int bench_churn_main(int argc, char **argv);
int bench_demo_main(int argc, char **argv);
int bench_keep_main(int argc, char **argv);
int bench_burst_main(int argc, char **argv);
int bench_seed_main(int argc, char **argv);
int bench_skynet_main(int argc, char **argv); /* fiber_bench.c */
int bench_switch_main(int argc, char **argv); /* fiber_bench.c */
int bench_wipe_main(int argc, char **argv);   /* wipe_bench.c */

#endif
