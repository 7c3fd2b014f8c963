/* Shared pieces of lacuna-bench: measurement, machine description, running a case in a child. */
#ifndef LACUNA_BENCH_H
#define LACUNA_BENCH_H

#include "cli.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define KIB 1024ul
#define MIB (1024ul * 1024ul)
#define GIB (1024ul * MIB)

uint64_t bench_now_ns(void);
long bench_rss_kib(void);                 /* /proc/self/statm resident */
long bench_status_kib(const char *field); /* e.g. "VmHWM:" from /proc/self/status */
long bench_vmas(void);                    /* lines of /proc/self/maps */
long bench_minflt(void);
void bench_machine(FILE *out, const char *prefix); /* CPU, cores, kernel, compiler: one line */
double bench_median(double *v, int n);             /* sorts v */

/* Before dlopen()ing an allocator with initial-exec TLS (jemalloc): glibc sets aside only a small
 * surplus of static TLS at start-up, too little for it, and the size is a tunable read at exec.
 * Re-executes lacuna-bench once with glibc.rtld.optional_static_tls raised; returns only if that
 * was done already or failed. */
void bench_need_static_tls(void);

/* Run fn(arg, out) in a forked child so each case starts from a clean process (peak RSS, VMAs);
 * the child fills *out (size bytes) which is copied back. Returns 0, or -1 if the child died. */
int bench_in_child(void (*fn)(void *arg, void *out), void *arg, void *out, size_t size);

/* Go peers (tools/go/NAME.go), run beside lacuna in the same rounds: a busy machine changes from
 * second to second, so only runs made side by side compare. bench_go_build builds NAME.go once
 * into a temporary directory ($TMPDIR or /tmp) and returns it (to pass to the others), or NULL
 * with the reason printed after `prefix` ("# " in CSV output): no `go` (Debian: golang-go), or
 * the build failed (the end of its output shown). bench_go_run runs the built program with the
 * NULL-terminated `args` and GOMAXPROCS=procs, gives each line of its output to `line` (with ctx),
 * and returns its peak RSS in KiB (wait4), or -1 when it could not run or failed (the end of its
 * output shown). bench_go_clean removes the directory. */
const char *bench_go_build(const char *name, char *dir, size_t dirlen, const char *prefix);
long bench_go_run(const char *dir, const char *name, const char *const *args, unsigned procs,
                  void (*line)(const char *text, void *ctx), void *ctx);
void bench_go_clean(const char *dir);

/* churn.c: one configuration, measured as the median of runs after a warm-up. */
typedef struct churn_cfg {
    const char *backend;
    size_t region, live, cycles, touch, threads;
    size_t cross; /* percent of frees done by another thread than the allocating one */
} churn_cfg;

typedef struct churn_result {
    double ns_per_cycle;
    double cross_pct;        /* frees done by another thread, as counted */
    double cpu_ns_per_cycle; /* CPU time (all threads) per cycle: ns_per_cycle without the waits
                                for a CPU, so a loaded machine shows as the gap between the two */
    long peak_rss_kib, end_rss_kib, vmas_peak, minflt;
    uint64_t release_calls, released_regions;
    long failed_at; /* live regions reached when an allocation failed, or -1 */
    int err;
    char skipped[192]; /* why the backend was not measured, or "" */
} churn_result;

int churn_measure(const churn_cfg *cfg, int runs, churn_result *med, double *min, double *max);
void churn_csv_header(FILE *out);
void churn_csv_row(FILE *out, const churn_cfg *cfg, const churn_result *r, double mn, double mx);

/* peers.c: tcmalloc, mimalloc, jemalloc through dlopen (backends "tcmalloc", "mimalloc",
 * "jemalloc", "jemalloc-tcache"). */
typedef struct peer_lib {
    void *(*alloc)(size_t);
    void (*free)(void *);
    void *(*allocx)(size_t, int); /* jemalloc's mallocx / dallocx */
    void (*freex)(void *, int);
    size_t region;
} peer_lib;

bool peer_is_lib(const char *backend);
/* 0, or -1 with why ("skipped: ...") filled. In the child process that runs the backend. */
int peer_lib_open(const char *backend, size_t region, peer_lib *p, char *why, size_t len);

static inline void *peer_lib_alloc(peer_lib *p)
{
    return p->allocx ? p->allocx(p->region, 0) : p->alloc(p->region);
}

static inline void peer_lib_free(peer_lib *p, void *r)
{
    if (p->freex)
        p->freex(r, 0);
    else
        p->free(r);
}

int bench_churn_main(int argc, char **argv);
int bench_demo_main(int argc, char **argv);
int bench_keep_main(int argc, char **argv);
int bench_burst_main(int argc, char **argv);
int bench_seed_main(int argc, char **argv);
int bench_skynet_main(int argc, char **argv);       /* fiber_bench.c */
int bench_switch_main(int argc, char **argv);       /* fiber_bench.c */
int bench_pingpong_main(int argc, char **argv);     /* fiber_bench.c */
int bench_crossfree_main(int argc, char **argv);    /* fiber_bench.c */
int bench_parked_main(int argc, char **argv);       /* parked.c */
int bench_census_main(int argc, char **argv);       /* census.c */
int bench_deep_main(int argc, char **argv);         /* deep.c */
int bench_sync_main(int argc, char **argv);         /* sync_bench.c */
int bench_select_main(int argc, char **argv);       /* sync_bench.c */
int bench_boost_skynet_main(int argc, char **argv); /* boost_fiber_bench.cpp, or a stub */
int bench_wipe_main(int argc, char **argv);         /* wipe_bench.c */

#endif
