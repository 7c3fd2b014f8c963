/* The one command-line parser of lacuna-bench and the examples (tools/cli.c): getopt_long over a
 * table of options, sizes and counts checked against their allowed range, messages that name the
 * bad value and what is allowed, the same exit codes everywhere, a memory check before a run, and
 * a progress line with the time left. Plain C11 + POSIX; links no lacuna. */
#ifndef LACUNA_CLI_H
#define LACUNA_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Exit codes: 0 only for success (and --help), 1 for a run that failed or was refused because the
 * machine cannot do it, 2 for a usage error. */
enum { CLI_OK = 0, CLI_FAILED = 1, CLI_USAGE = 2, CLI_CONTINUE = -1 };

typedef enum cli_kind {
    CLI_FLAG,   /* bool *: present or not */
    CLI_SIZE,   /* size_t *: bytes, or with K, M, G, T (binary: 64K = 65536); min..max */
    CLI_COUNT,  /* size_t *: a whole decimal number, min..max */
    CLI_CHOICE, /* const char **: one of choices (NULL-terminated) */
    CLI_TEXT,   /* const char **: any text; the caller checks it */
} cli_kind;

typedef struct cli_opt {
    const char *name;           /* "region" for --region (positional: shown as REGION); NULL ends */
    cli_kind kind;              /* what the value is */
    void *value;                /* where it goes; its value before parsing is the default shown */
    size_t min, max;            /* CLI_SIZE, CLI_COUNT: the allowed range, inclusive */
    const char *help;           /* one line for --help */
    const char *const *choices; /* CLI_CHOICE: the allowed words */
} cli_opt;

typedef struct cli_spec {
    const char *prog;    /* "lacuna-bench churn": the prefix of every message */
    const char *what;    /* one line: what the command does */
    const cli_opt *opts; /* --options, ended by a NULL name */
    const cli_opt *args; /* optional positional arguments in order (NULL: none allowed) */
    const char *more;    /* further --help text, or NULL */
} cli_spec;

/* Parse argv[1..argc) (argv[0] is the command's name). Returns CLI_CONTINUE when the command
 * should run, else the exit status: 0 after --help (printed on stdout), 2 after a usage error
 * (named on stderr with what is allowed). Call once per process. */
int cli_parse(const cli_spec *s, int argc, char **argv);

/* A usage error found after parsing (a combination of options): prints "PROG: MESSAGE (see
 * PROG --help)" on stderr and returns CLI_USAGE. */
int cli_usage_error(const cli_spec *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Refuse a run that needs more memory than the machine has, before it starts: need_bytes (what
 * the run keeps resident at its peak) against MemAvailable (/proc/meminfo) and RLIMIT_AS /
 * RLIMIT_DATA. Returns 0, or prints what was needed and what there is and returns CLI_FAILED.
 * `what` says where the need comes from ("100000000 live regions of 64 KiB, 1 page touched"). */
int cli_check_memory(const cli_spec *s, double need_bytes, const char *what);

/* Bytes MemAvailable says can still be made resident without swapping, or -1 if unknown. */
double cli_mem_available(void);

/* "64K", "1M", "1G" when exact, else plain bytes: for messages and defaults. */
const char *cli_size_str(size_t bytes, char buf[32]);

/* A progress line with the time left, on stderr, only when stderr is a terminal, and only once a
 * run has taken longer than two seconds (short runs print nothing; piped output stays clean). */
typedef struct cli_progress {
    uint64_t t0, last; /* ns: start, last line printed */
    bool shown;        /* a line is on the terminal: clear it at the end */
} cli_progress;

void cli_progress_start(cli_progress *p);
/* done: the fraction of the whole run finished (0..1); label: what runs now. */
void cli_progress_update(cli_progress *p, double done, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void cli_progress_end(cli_progress *p);

#endif
