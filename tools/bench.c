/* lacuna-bench: every measurement of lacuna against the naive ways, one binary, named cases
 * (the shape of libuv's benchmark list). Each case prints the machine it ran on; numbers are
 * medians over repeated runs, with min and max beside them. Never run by the tests. */
#define _GNU_SOURCE
#include "bench.h"
#include "lacuna.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

uint64_t bench_now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

long bench_rss_kib(void)
{
    long size, rss = -1;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &rss) != 2)
            rss = -1;
        fclose(f);
    }
    return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

long bench_status_kib(const char *field)
{
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0)
            v = strtol(line + n, NULL, 10);
    fclose(f);
    return v;
}

long bench_vmas(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    long n = 0;
    int c;
    if (!f)
        return -1;
    while ((c = getc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

long bench_minflt(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

void bench_machine(FILE *out, const char *prefix)
{
    char model[256] = "unknown CPU", line[512];
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "model name", 10) == 0) {
                char *c = strchr(line, ':');
                if (c) {
                    snprintf(model, sizeof model, "%s", c + 2);
                    model[strcspn(model, "\n")] = '\0';
                }
                break;
            }
        }
        fclose(f);
    }
    struct utsname u;
    uname(&u);
    fprintf(out, "%smachine: %s, %ld cores, Linux %s %s, %s\n", prefix, model,
            sysconf(_SC_NPROCESSORS_ONLN), u.release, u.machine, "gcc " __VERSION__);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static char **bench_argv; /* main's, for bench_need_static_tls */

void bench_need_static_tls(void)
{
    if (getenv("LACUNA_BENCH_TLS") || bench_argv == NULL)
        return;
    /* jemalloc's thread state alone is several KiB of initial-exec TLS. */
    const char *tune = "glibc.rtld.optional_static_tls=65536";
    const char *old = getenv("GLIBC_TUNABLES");
    char buf[1024];
    snprintf(buf, sizeof buf, "%s%s%s", old ? old : "", old ? ":" : "", tune);
    setenv("GLIBC_TUNABLES", buf, 1);
    setenv("LACUNA_BENCH_TLS", "1", 1);
    fflush(NULL);
    execv("/proc/self/exe", bench_argv);
    /* Not fatal: the jemalloc backends will then say that dlopen failed, and why. */
}

int bench_in_child(void (*fn)(void *arg, void *out), void *arg, void *out, size_t size)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        close(fds[0]);
        memset(out, 0, size);
        fn(arg, out);
        const char *p = out;
        size_t left = size;
        while (left) {
            ssize_t w = write(fds[1], p, left);
            if (w <= 0)
                _exit(1);
            p += w;
            left -= (size_t)w;
        }
        _exit(0);
    }
    close(fds[1]);
    size_t got = 0;
    ssize_t r;
    while (got < size && (r = read(fds[0], (char *)out + got, size - got)) > 0)
        got += (size_t)r;
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    return got == size && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* The warm alloc+free pair alone, for instruction counts:
 *   valgrind --tool=callgrind --toggle-collect='lacuna_alloc' --toggle-collect='lacuna_free' \
 *       ./build/tools/lacuna-bench pair 1000000
 * then divide the total Ir by the pairs (tools/callgrind-pair.sh does both). */
static int pair_main(int argc, char **argv)
{
    size_t n = 1000000;
    bool csv = false;
    const cli_opt a[] = {
        {"pairs", CLI_COUNT, &n, 1, 1000000000000ull, "warm alloc+free pairs to time", NULL}, {0}};
    const cli_opt o[] = {{"csv", CLI_FLAG, &csv, 0, 0, "CSV instead of a line of text", NULL}, {0}};
    cli_spec spec = {"lacuna-bench pair",
                     "Warm lacuna_alloc+lacuna_free pairs alone, for "
                     "instruction counts (tools/callgrind-pair.sh).",
                     o, a, NULL};
    int rc = cli_parse(&spec, argc, argv);
    if (rc != CLI_CONTINUE)
        return rc;
    lacuna_pool_config c = {.region_size = 64 * KIB, .capacity = 1024};
    lacuna_pool *p;
    int err = lacuna_pool_create(&c, &p);
    if (err) {
        fprintf(stderr, "lacuna_pool_create: %s\n", strerror(err));
        return 1;
    }
    void *warm = lacuna_alloc(p); /* make the thread cache and a warm region */
    lacuna_free(p, warm);
    /* In chunks of 2^24 pairs (tens of ms), so a long run can say how far it is. */
    cli_progress pr;
    cli_progress_start(&pr);
    uint64_t t0 = bench_now_ns();
    for (size_t done = 0; done < n;) {
        size_t chunk = n - done < ((size_t)1 << 24) ? n - done : (size_t)1 << 24;
        for (size_t i = 0; i < chunk; i++) {
            void *r = lacuna_alloc(p);
            __asm__ volatile("" : : "r"(r) : "memory");
            lacuna_free(p, r);
        }
        done += chunk;
        cli_progress_update(&pr, (double)done / (double)n, "pair: %zu of %zu", done, n);
    }
    uint64_t t1 = bench_now_ns();
    cli_progress_end(&pr);
    if (csv) {
        bench_machine(stdout, "# ");
        printf("pairs,ns_per_pair\n%zu,%.2f\n", n, (double)(t1 - t0) / (double)n);
    } else {
        printf("%zu warm alloc+free pairs: %.1f ns per pair\n", n, (double)(t1 - t0) / (double)n);
    }
    lacuna_pool_destroy(p);
    return 0;
}

#ifndef LACUNA_BENCH_BOOST_FIBER /* else tools/boost_fiber_bench.cpp */
int bench_boost_skynet_main(int argc, char **argv)
{
    (void)argc, (void)argv;
    printf("lacuna-bench boost-skynet: skipped: Boost.Fiber was not found at build time "
           "(apt-get install libboost-fiber-dev, then rebuild)\n");
    return 0;
}
#endif

/* The cases, in the order `lacuna-bench --help` lists them. */
static const struct bench_case {
    const char *name;
    int (*main)(int argc, char **argv);
    const char *what;
} cases[] = {
    {"demo", bench_demo_main, "100,000 guarded 64 KiB stacks: the naive way vs lacuna"},
    {"churn", bench_churn_main, "free a random live region, allocate one, touch pages (--help)"},
    {"burst", bench_burst_main, "live regions ramp 0 -> 100,000 -> 0: RSS over time, per backend"},
    {"seed", bench_seed_main, "every answer to 'give these pages back', side by side"},
    {"keep", bench_keep_main, "keep_resident: memset the hot top pages vs release and refault"},
    {"pair", pair_main, "warm alloc+free pairs alone (for tools/callgrind-pair.sh)"},
    {"skynet", bench_skynet_main, "the skynet benchmark (1,111,111 fibers): time, peak RSS"},
    {"switch", bench_switch_main, "ns per fiber switch (lacuna_yield) and per spawn+join"},
    {"pingpong", bench_pingpong_main, "ns per channel round trip between two workers"},
    {"crossfree", bench_crossfree_main,
     "fibers that end on another worker: their stacks' way back"},
    {"sync", bench_sync_main, "ns per lacuna_mutex lock+unlock, uncontended and contended, vs Go"},
    {"select", bench_select_main, "ns per lacuna_select over 4 channels, one ready, vs a recv"},
    {"parked", bench_parked_main, "a million parked fibers: time, RSS, page tables"},
    {"census", bench_census_main, "resident pages over live regions: histogram; punching them"},
    {"deep", bench_deep_main, "fibers deep once, then parked: RSS before and after the release"},
    {"boost-skynet", bench_boost_skynet_main,
     "skynet on Boost.Fiber: lacuna stacks vs Boost's protected and pooled stacks"},
    {"wipe", bench_wipe_main, "zero a sparsely resident 1 GiB range: every strategy (--help)"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: lacuna-bench CASE [options]   (`make bench` runs them all: "
                 "tools/bench.sh)\ncases (each takes --help):\n");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        fprintf(out, "  %-12s %s\n", cases[i].name, cases[i].what);
    fprintf(out, "Tables by default, CSV with --csv. Exit status: 0 success, 1 the run failed or "
                 "was refused, 2 usage error.\n");
}

int main(int argc, char **argv)
{
    bench_argv = argv;
    if (argc < 2) {
        fprintf(stderr, "lacuna-bench: which case? (see lacuna-bench --help)\n");
        return 2;
    }
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (strcmp(argv[1], cases[i].name) == 0)
            return cases[i].main(argc - 1, argv + 1);
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "lacuna-bench: unknown case '%s'; one of:", argv[1]);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        fprintf(stderr, " %s", cases[i].name);
    fprintf(stderr, " (see lacuna-bench --help)\n");
    return 2;
}

/* ---- Go peers ------------------------------------------------------------------------------ */

/* Run argv in directory cwd (NULL: here) with its stdout and stderr into fd `out`, and wait for it:
 * its exit status, or -1. With procs > 0 it runs with GOMAXPROCS=procs. Its environment is built
 * before the fork: after it, the child calls only async-signal-safe functions (lacuna-bench may
 * have threads). */
static int run_argv(const char *cwd, char *const argv[], int out, unsigned procs, struct rusage *ru)
{
    extern char **environ;
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + 2, sizeof *env), maxprocs[32];
    if (env == NULL)
        return -1;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (procs == 0 || strncmp(environ[i], "GOMAXPROCS=", 11) != 0)
            env[k++] = environ[i];
    snprintf(maxprocs, sizeof maxprocs, "GOMAXPROCS=%u", procs);
    if (procs > 0)
        env[k++] = maxprocs;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        if (out >= 0) {
            dup2(out, 1);
            dup2(out, 2);
        }
        if (cwd && chdir(cwd) != 0)
            _exit(126);
        execvpe(argv[0], argv, env);
        _exit(127);
    }
    free(env);
    int status;
    struct rusage r;
    if (pid < 0 || wait4(pid, &status, 0, ru ? ru : &r) != pid)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Print the last lines of file `path`, each after `prefix`. */
static void print_tail(const char *path, const char *prefix)
{
    char lines[4][256] = {{0}}, text[256];
    unsigned n = 0;
    FILE *f = fopen(path, "r");
    while (f && fgets(text, sizeof text, f))
        snprintf(lines[n++ % 4], sizeof lines[0], "%s", text);
    if (f)
        fclose(f);
    for (unsigned i = n > 4 ? n - 4 : 0; i < n; i++)
        printf("%s  | %s", prefix, lines[i % 4]);
}

const char *bench_go_build(const char *name, char *dir, size_t dirlen, const char *prefix)
{
    if (system("command -v go >/dev/null 2>&1") != 0) {
        printf("%sgo: skipped: no `go` command on PATH (Debian: apt-get install golang-go)\n",
               prefix);
        return NULL;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, dirlen, "%s/lacuna-bench-go.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(dir) == NULL) {
        printf("%sgo: skipped: no temporary directory in %s (%s)\n", prefix,
               tmp && *tmp ? tmp : "/tmp", strerror(errno));
        return NULL;
    }
    /* Go's build cache: its usual place, or (no HOME: CI) one in the temporary directory. */
    char cache[PATH_MAX], src[PATH_MAX], exe[PATH_MAX], log[PATH_MAX];
    snprintf(cache, sizeof cache, "%s/cache", dir);
    if (getenv("HOME") == NULL && getenv("GOCACHE") == NULL)
        setenv("GOCACHE", cache, 1);
    snprintf(src, sizeof src, "%s.go", name);
    snprintf(exe, sizeof exe, "%s/%s", dir, name);
    snprintf(log, sizeof log, "%s/build.log", dir);
    int out = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    char *argv[] = {"go", "build", "-o", exe, src, NULL};
    int rc = out < 0 ? -1 : run_argv(LACUNA_SOURCE_DIR "/tools/go", argv, out, 0, NULL);
    if (out >= 0)
        close(out);
    if (rc != 0) {
        printf("%sgo: skipped: `go build tools/go/%s.go` failed:\n", prefix, name);
        print_tail(log, prefix);
        bench_go_clean(dir);
        return NULL;
    }
    return dir;
}

long bench_go_run(const char *dir, const char *name, const char *const *args, unsigned procs,
                  void (*line)(const char *text, void *ctx), void *ctx)
{
    char exe[PATH_MAX], log[PATH_MAX];
    snprintf(exe, sizeof exe, "%s/%s", dir, name);
    snprintf(log, sizeof log, "%s/run.log", dir);
    int out = open(log, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0)
        return -1;
    char *argv[16] = {exe};
    for (size_t i = 0; args && args[i] && i + 2 < sizeof argv / sizeof *argv; i++)
        argv[i + 1] = (char *)args[i];
    struct rusage ru;
    int rc = run_argv(NULL, argv, out, procs, &ru);
    close(out);
    FILE *f = fopen(log, "r");
    char text[512];
    while (f && fgets(text, sizeof text, f))
        if (line)
            line(text, ctx);
    if (f)
        fclose(f);
    if (rc != 0) {
        printf("go: %s exited with status %d:\n", name, rc);
        print_tail(log, "");
        return -1;
    }
    return ru.ru_maxrss; /* KiB on Linux */
}

static int remove_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st, (void)type, (void)ftw;
    return remove(path);
}

void bench_go_clean(const char *dir)
{
    if (nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
        fprintf(stderr, "lacuna-bench: could not remove %s\n", dir);
}
