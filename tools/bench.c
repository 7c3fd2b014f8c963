/* lacuna-bench: every measurement of lacuna against the naive ways, one binary, named cases
 * (the shape of libuv's benchmark list). Each case prints the machine it ran on; numbers are
 * medians over repeated runs, with min and max beside them. Never run by the tests. */
#define _GNU_SOURCE
#include "bench.h"

#include <errno.h>
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

int bench_parse_size(const char *s, size_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v < 0)
        return EINVAL;
    switch (*end) {
    case 'k': case 'K': v *= 1024; end++; break;
    case 'm': case 'M': v *= 1024 * 1024; end++; break;
    case 'g': case 'G': v *= 1024.0 * 1024 * 1024; end++; break;
    default: break;
    }
    if (*end == 'i' || *end == 'B')
        end++;
    if (*end != '\0')
        return EINVAL;
    *out = (size_t)v;
    return 0;
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

void bench_progress(const char *fmt, ...)
{
    if (!isatty(2) && !getenv("LACUNA_BENCH_PROGRESS"))
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "\r\033[K");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
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

static void usage(FILE *out)
{
    fprintf(out, "usage: lacuna-bench CASE [options]\n"
                 "cases:\n"
                 "  demo     100,000 guarded 64 KiB stacks: the naive way vs lacuna\n"
                 "  churn    free a random live region, allocate a fresh one, touch pages\n"
                 "           (--help for its options)\n"
                 "  wipe     zero a sparsely resident 1 GiB range: every lacuna_wipe strategy and\n"
                 "           the table modes per residency (--help for its options)\n"
                 "  all      every case with its default options (what `make bench` runs)\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *c = argv[1];
    if (strcmp(c, "demo") == 0)
        return bench_demo_main(argc - 1, argv + 1);
    if (strcmp(c, "churn") == 0)
        return bench_churn_main(argc - 1, argv + 1);
    if (strcmp(c, "wipe") == 0)
        return bench_wipe_main(argc - 1, argv + 1);
    if (strcmp(c, "all") == 0) {
        char *demo[] = {"demo", NULL};
        char *churn[] = {"churn", "--backend", "all", NULL};
        char *wipe[] = {"wipe", NULL};
        int rc = bench_demo_main(1, demo);
        rc = rc ? rc : bench_churn_main(3, churn);
        return rc ? rc : bench_wipe_main(1, wipe);
    }
    if (strcmp(c, "-h") == 0 || strcmp(c, "--help") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "lacuna-bench: unknown case '%s'\n", c);
    usage(stderr);
    return 2;
}
