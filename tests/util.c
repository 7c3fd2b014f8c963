/* The test runner and the measurement helpers every test uses. */
#define _GNU_SOURCE
#include "test.h"
#include "lacuna.h"

#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif

#define LT_MAX 128

static struct {
    const char *name;
    lt_fn fn;
} tests[LT_MAX];
static int ntests;

void lt_register(const char *name, lt_fn fn)
{
    if (ntests < LT_MAX) {
        tests[ntests].name = name;
        tests[ntests].fn = fn;
        ntests++;
    }
}

long lt_rss_kib(void)
{
    long size = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &rss) != 2)
            rss = -1;
        fclose(f);
    }
    return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

long lt_status_kib(const char *field)
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

long lt_vma_count(void)
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

lacuna_pool *lt_pool(lacuna_pool_config c)
{
    lacuna_pool *p = NULL;
    CHECK_EQ(lacuna_pool_create(&c, &p), 0);
    return p;
}

lacuna_stats lt_stats(const lacuna_pool *p)
{
    lacuna_stats st;
    lacuna_pool_stats(p, &st);
    return st;
}

size_t lt_resident_pages(const void *addr, size_t len)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE), pages = (len + pg - 1) / pg, n = 0;
    unsigned char *vec = malloc(pages ? pages : 1);
    CHECK(vec != NULL);
    CHECK_EQ(mincore((void *)addr, len, vec), 0);
    for (size_t i = 0; i < pages; i++)
        n += vec[i] & 1;
    free(vec);
    return n;
}

int lt_all_zero(const void *m, size_t bytes)
{
    const unsigned char *b = m;
    uint64_t acc = 0, w;
    size_t i = 0;
    for (; i + 8 <= bytes; i += 8) {
        memcpy(&w, b + i, 8);
        acc |= w;
    }
    for (; i < bytes; i++)
        acc |= b[i];
    return acc == 0;
}

long lt_minflt(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

int lt_guarded(const char *region, size_t guard_size)
{
    int fds[2];
    CHECK_EQ(pipe(fds), 0);
    ssize_t w = write(fds[1], region - guard_size, 1);
    int e = errno;
    close(fds[0]);
    close(fds[1]);
    return w < 0 && e == EFAULT;
}

int lt_under_valgrind(void)
{
#ifdef RUNNING_ON_VALGRIND
    return RUNNING_ON_VALGRIND != 0;
#else
    return getenv("LACUNA_UNDER_VALGRIND") != NULL;
#endif
}

int lt_fork_run(void (*fn)(void *), void *arg, char *err_buf, size_t err_len)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 2);
        fn(arg);
        _exit(0);
    }
    close(fds[1]);
    size_t n = 0;
    ssize_t r;
    while (err_buf && n + 1 < err_len && (r = read(fds[0], err_buf + n, err_len - 1 - n)) > 0)
        n += (size_t)r;
    if (err_buf)
        err_buf[n] = '\0';
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
}

static int run_forked(int i, unsigned timeout)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        alarm(timeout);
        tests[i].fn();
        fflush(NULL);
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    fprintf(stderr, "%s: killed by signal %d%s\n", tests[i].name, WTERMSIG(status),
            WTERMSIG(status) == SIGALRM ? " (timeout)" : "");
    return 1;
}

int main(int argc, char **argv)
{
    const char *t = getenv("LACUNA_TEST_TIMEOUT");
    unsigned timeout = t ? (unsigned)atoi(t) : 300;
    if (argc > 1) { /* one test, in this process: for gdb */
        for (int i = 0; i < ntests; i++)
            if (strcmp(tests[i].name, argv[1]) == 0) {
                tests[i].fn();
                printf("ok %s\n", tests[i].name);
                return 0;
            }
        fprintf(stderr, "no test named %s\n", argv[1]);
        return 2;
    }
    int failed = 0, skipped = 0;
    for (int i = 0; i < ntests; i++) {
        int rc = run_forked(i, timeout);
        const char *what = rc == 0 ? "ok" : rc == LT_SKIP ? "skip" : "FAIL";
        printf("%-4s %s\n", what, tests[i].name);
        fflush(stdout);
        failed += rc != 0 && rc != LT_SKIP;
        skipped += rc == LT_SKIP;
    }
    printf("%d tests: %d passed, %d failed, %d skipped\n", ntests, ntests - failed - skipped,
           failed, skipped);
    if (failed)
        return 1;
    return skipped == ntests && ntests > 0 ? LT_SKIP : 0;
}
