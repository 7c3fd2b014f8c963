/* Fibers in a program built as hardened distributions build it: -fcf-protection=full on x86-64,
 * -mbranch-protection=standard on AArch64 (tests/CMakeLists.txt), linked with liblacuna.a. They
 * spawn, switch (also through a pointer to lacuna_yield: an indirect call into the library) and
 * join as usual. tests/test_elf_notes.sh checks what the link kept: IBT or BTI, never SHSTK.
 * Where IBT or BTI is enforced, an indirect branch to code without a landing pad would die by a
 * control-protection fault (SIGSEGV) here. */
#include "test.h"

#include <stdint.h>

#define ROUNDS 1000

static int turn; /* which of the two fibers ran last */
static void (*volatile yield_ptr)(void) = lacuna_yield;

static void *pinger(void *arg)
{
    int me = (int)(intptr_t)arg;
    for (int i = 0; i < ROUNDS; i++) {
        CHECK(turn != me); /* strict alternation: the other one ran since our last turn */
        turn = me;
        yield_ptr();
    }
    return arg;
}

TEST(switch_between_two_fibers)
{
    turn = -1;
    lacuna_fiber *a = lacuna_go(pinger, (void *)1), *b = lacuna_go(pinger, (void *)2);
    CHECK(a != NULL && b != NULL);
    CHECK_EQ((intptr_t)lacuna_join(a), 1);
    CHECK_EQ((intptr_t)lacuna_join(b), 2);
    CHECK_EQ(lacuna_run(), 0);
}

static void *square(void *arg)
{
    lacuna_yield();
    return (void *)((intptr_t)arg * (intptr_t)arg);
}

TEST(spawn_and_join)
{
    lacuna_fiber *f[64];
    for (int i = 0; i < 64; i++)
        CHECK((f[i] = lacuna_go(square, (void *)(intptr_t)i)) != NULL);
    for (int i = 0; i < 64; i++)
        CHECK_EQ((intptr_t)lacuna_join(f[i]), i * i);
    CHECK_EQ(lacuna_run(), 0);
}
