/* The command-line parser shared by every lacuna-bench case and the examples (see cli.h).
 *
 * Owns: turning argv into values through getopt_long, the wording of every usage error (the bad
 * value, then what is allowed), the exit codes (0 success or --help, 1 failed or refused run, 2
 * usage), the memory check before a run, and the progress line. Does not: know any case's
 * options (each passes a table), or print results. */
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

const char *cli_size_str(size_t bytes, char buf[32])
{
    static const char units[] = "KMGT";
    int u = -1;
    size_t v = bytes;
    while (v != 0 && v % 1024 == 0 && u < 3) {
        v /= 1024;
        u++;
    }
    if (u < 0)
        snprintf(buf, 32, "%zu", bytes);
    else
        snprintf(buf, 32, "%zu%c", v, units[u]);
    return buf;
}

/* Bytes: digits, an optional fraction, an optional K/M/G/T (binary) with an optional "i" and
 * "B". No sign, exponent, hex or "inf": strtod alone would take all of those. */
static int parse_size(const char *s, size_t *out)
{
    const char *p = s;
    if (*p < '0' || *p > '9')
        return EINVAL;
    while ((*p >= '0' && *p <= '9') || *p == '.')
        p++;
    double v = strtod(s, NULL), mult = 1;
    const char *u = strchr("kKmMgGtT", *p);
    if (*p != '\0' && u != NULL) {
        int shift = (int)((u - "kKmMgGtT") / 2 + 1) * 10;
        mult = (double)(1ull << shift);
        p++;
        if (*p == 'i')
            p++;
    }
    if (*p == 'B')
        p++;
    v *= mult;
    if (*p != '\0' || v != v || v >= 18446744073709551615.0 || v != (double)(uint64_t)v)
        return EINVAL; /* trailing junk, or not a whole number of bytes, or too big */
    *out = (size_t)v;
    return 0;
}

static int parse_count(const char *s, size_t *out)
{
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9')
            return EINVAL;
    if (*s == '\0')
        return EINVAL;
    errno = 0;
    unsigned long long v = strtoull(s, NULL, 10);
    if (errno || v > SIZE_MAX)
        return ERANGE;
    *out = (size_t)v;
    return 0;
}

static const char *metavar(const cli_opt *o)
{
    switch (o->kind) {
    case CLI_SIZE:
        return "SIZE";
    case CLI_COUNT:
        return "N";
    case CLI_CHOICE:
        return "WORD";
    case CLI_TEXT:
        return "TEXT";
    default:
        return "";
    }
}

/* "between 4K and 1G" / "between 1 and 64" / "one of: a, b, c" into buf. */
static const char *allowed(const cli_opt *o, char *buf, size_t len)
{
    char a[32], b[32];
    size_t n = 0;
    buf[0] = '\0';
    if (o->kind == CLI_SIZE)
        snprintf(buf, len, "between %s and %s", cli_size_str(o->min, a), cli_size_str(o->max, b));
    else if (o->kind == CLI_COUNT)
        snprintf(buf, len, "a whole number between %zu and %zu", o->min, o->max);
    else if (o->kind == CLI_CHOICE)
        for (int i = 0; o->choices[i] && n < len; i++)
            n += (size_t)snprintf(buf + n, len - n, "%s%s", i ? ", " : "one of: ", o->choices[i]);
    return buf;
}

/* Whether o is one of the positional arguments (found by identity: the options and the arguments
 * are separate arrays, whose addresses say nothing about each other). */
static bool is_arg(const cli_spec *s, const cli_opt *o)
{
    for (const cli_opt *a = s->args; a && a->name; a++)
        if (a == o)
            return true;
    return false;
}

static void opt_name(const cli_spec *s, const cli_opt *o, char *buf, size_t len)
{
    if (is_arg(s, o)) { /* positional: its name in capitals */
        size_t i = 0;
        for (; o->name[i] && i + 1 < len; i++)
            buf[i] = (char)(o->name[i] >= 'a' && o->name[i] <= 'z' ? o->name[i] - 32 : o->name[i]);
        buf[i] = '\0';
    } else {
        snprintf(buf, len, "--%s", o->name);
    }
}

/* Store text as o's value, or name what is wrong with it. 0 or CLI_USAGE. */
static int set_value(const cli_spec *s, const cli_opt *o, const char *text)
{
    char name[64], why[512];
    opt_name(s, o, name, sizeof name);
    size_t v = 0;
    switch (o->kind) {
    case CLI_FLAG:
        *(bool *)o->value = true;
        return 0;
    case CLI_TEXT:
        *(const char **)o->value = text;
        return 0;
    case CLI_CHOICE:
        for (int i = 0; o->choices[i]; i++)
            if (strcmp(o->choices[i], text) == 0) {
                *(const char **)o->value = o->choices[i];
                return 0;
            }
        fprintf(stderr, "%s: %s %s: must be %s\n", s->prog, name, text,
                allowed(o, why, sizeof why));
        return CLI_USAGE;
    case CLI_SIZE:
        if (parse_size(text, &v) != 0) {
            fprintf(stderr,
                    "%s: %s %s: not a size (bytes, or a number with K, M, G or T, e.g. "
                    "64K); must be %s\n",
                    s->prog, name, text, allowed(o, why, sizeof why));
            return CLI_USAGE;
        }
        break;
    case CLI_COUNT:
        if (parse_count(text, &v) != 0) {
            fprintf(stderr, "%s: %s %s: must be %s\n", s->prog, name, text,
                    allowed(o, why, sizeof why));
            return CLI_USAGE;
        }
        break;
    }
    if (v < o->min || v > o->max) { /* the option's help line says why the bound is there */
        fprintf(stderr, "%s: %s %s: must be %s (%s)\n", s->prog, name, text,
                allowed(o, why, sizeof why), o->help);
        return CLI_USAGE;
    }
    *(size_t *)o->value = v;
    return 0;
}

static void help_line(const cli_spec *s, const cli_opt *o, FILE *out)
{
    char name[64], def[64] = "", a[32], why[512];
    opt_name(s, o, name, sizeof name);
    if (o->kind != CLI_FLAG && !is_arg(s, o))
        snprintf(name + strlen(name), sizeof name - strlen(name), " %s", metavar(o));
    if (o->kind == CLI_SIZE)
        snprintf(def, sizeof def, "default %s", cli_size_str(*(size_t *)o->value, a));
    else if (o->kind == CLI_COUNT)
        snprintf(def, sizeof def, "default %zu", *(size_t *)o->value);
    else if ((o->kind == CLI_CHOICE || o->kind == CLI_TEXT) && *(const char **)o->value)
        snprintf(def, sizeof def, "default %s", *(const char **)o->value);
    fprintf(out, "  %-20s %s", name, o->help);
    allowed(o, why, sizeof why);
    if (def[0] || why[0])
        fprintf(out, " (%s%s%s)", def, def[0] && why[0] ? "; " : "", why);
    fputc('\n', out);
}

static void usage(const cli_spec *s, FILE *out)
{
    fprintf(out, "usage: %s [options]", s->prog);
    for (const cli_opt *o = s->args; o && o->name; o++) {
        char name[64];
        opt_name(s, o, name, sizeof name);
        fprintf(out, " [%s]", name);
    }
    fprintf(out, "\n%s\n", s->what);
    if (s->args && s->args->name) {
        fprintf(out, "arguments:\n");
        for (const cli_opt *o = s->args; o->name; o++)
            help_line(s, o, out);
    }
    fprintf(out, "options:\n");
    for (const cli_opt *o = s->opts; o && o->name; o++)
        help_line(s, o, out);
    fprintf(out, "  %-20s %s\n", "-h, --help", "this text");
    if (s->more)
        fprintf(out, "%s", s->more);
    fprintf(out, "exit status: 0 success, 1 the run failed or was refused, 2 usage error\n");
}

int cli_usage_error(const cli_spec *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", s->prog);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see %s --help)\n", s->prog);
    va_end(ap);
    return CLI_USAGE;
}

int cli_parse(const cli_spec *s, int argc, char **argv)
{
    enum { HELP = 'h', FIRST = 256 };
    size_t n = 0;
    while (s->opts && s->opts[n].name)
        n++;
    struct option *lo = calloc(n + 2, sizeof *lo);
    if (lo == NULL) {
        perror(s->prog);
        return CLI_FAILED;
    }
    for (size_t i = 0; i < n; i++)
        lo[i] = (struct option){s->opts[i].name,
                                s->opts[i].kind == CLI_FLAG ? no_argument : required_argument, NULL,
                                FIRST + (int)i};
    lo[n] = (struct option){"help", no_argument, NULL, HELP};
    int rc = CLI_CONTINUE, c;
    opterr = 0; /* our messages, not getopt's */
    optind = 0; /* a full re-initialisation (glibc) */
    /* "+": stop at the first positional, so a negative-looking value stays with its option */
    while (rc == CLI_CONTINUE && (c = getopt_long(argc, argv, "+:h", lo, NULL)) != -1) {
        const char *bad = argv[optind - 1];
        if (c == HELP) {
            usage(s, stdout);
            rc = CLI_OK;
        } else if (c >= FIRST) {
            if (set_value(s, &s->opts[c - FIRST], optarg) != 0)
                rc = CLI_USAGE;
        } else if (c == ':' && optopt >= FIRST) {
            char why[512];
            const cli_opt *o = &s->opts[optopt - FIRST];
            allowed(o, why, sizeof why);
            rc = cli_usage_error(s, "--%s needs a value: %s%s%s", o->name, metavar(o),
                                 why[0] ? " " : "", why);
        } else if (optopt >= FIRST || optopt == HELP) { /* --csv=1, --help=x */
            rc = cli_usage_error(s, "'%s' takes no value", bad);
        } else if (optopt) {
            rc = cli_usage_error(s, "unknown option '-%c'", optopt);
        } else {
            rc = cli_usage_error(s, "unknown option '%s'", bad);
        }
    }
    free(lo);
    const cli_opt *pos = s->args;
    for (int i = optind; rc == CLI_CONTINUE && i < argc; i++) {
        if (pos && pos->name) {
            if (set_value(s, pos++, argv[i]) != 0)
                rc = CLI_USAGE;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            rc = cli_usage_error(s, "'%s' after the arguments: options go first", argv[i]);
        } else {
            rc = cli_usage_error(s, "unexpected argument '%s'", argv[i]);
        }
    }
    return rc;
}

double cli_mem_available(void)
{
    char line[256];
    double kib = -1;
    FILE *f = fopen("/proc/meminfo", "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "MemAvailable:", 13) == 0)
            kib = strtod(line + 13, NULL);
    fclose(f);
    return kib < 0 ? -1 : kib * 1024;
}

static const char *human(double bytes, char buf[32])
{
    static const char *const u[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB"};
    int i = 0;
    while (bytes >= 1024 && i < 5) {
        bytes /= 1024;
        i++;
    }
    snprintf(buf, 32, i ? "%.1f %s" : "%.0f %s", bytes, u[i]);
    return buf;
}

int cli_check_memory(const cli_spec *s, double need, const char *what)
{
    char a[32], b[32];
    /* A run may take 90 % of what is available: the rest is for the system and the measurement's
     * own noise (page tables, stdio, the child process that runs each case). */
    double avail = cli_mem_available();
    if (avail >= 0 && need > 0.9 * avail) {
        fprintf(stderr,
                "%s: refusing to run: it needs about %s resident (%s), more than 90 %% of the "
                "%s this machine has available (MemAvailable in /proc/meminfo)\n",
                s->prog, human(need, a), what, human(avail, b));
        return CLI_FAILED;
    }
    static const int limits[] = {RLIMIT_AS, RLIMIT_DATA};
    static const char *const names[] = {"RLIMIT_AS (ulimit -v)", "RLIMIT_DATA (ulimit -d)"};
    for (int i = 0; i < 2; i++) {
        struct rlimit rl;
        if (getrlimit(limits[i], &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
            need > (double)rl.rlim_cur) {
            fprintf(stderr,
                    "%s: refusing to run: it needs about %s (%s), more than %s allows: %s\n",
                    s->prog, human(need, a), what, names[i], human((double)rl.rlim_cur, b));
            return CLI_FAILED;
        }
    }
    return 0;
}

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

void cli_progress_start(cli_progress *p)
{
    *p = (cli_progress){.t0 = now_ns()};
}

void cli_progress_update(cli_progress *p, double done, const char *fmt, ...)
{
    uint64_t t = now_ns();
    double elapsed = (double)(t - p->t0) / 1e9;
    /* Quiet when piped, quiet for runs that end within two seconds, and at most 4 lines/s. */
    if (!isatty(2) || elapsed < 2 || (p->shown && t - p->last < 250000000u))
        return;
    p->last = t;
    p->shown = true;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "\r\033[K");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (done > 0.01 && done < 1) {
        double left = elapsed * (1 - done) / done;
        if (left < 100)
            fprintf(stderr, " - %.0f %%, about %.0f s left", done * 100, left);
        else
            fprintf(stderr, " - %.0f %%, about %.0f min left", done * 100, left / 60);
    }
    fflush(stderr);
}

void cli_progress_end(cli_progress *p)
{
    if (p->shown)
        fprintf(stderr, "\r\033[K");
    p->shown = false;
}
