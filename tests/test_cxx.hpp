// CHECK for the C++ tests (the Boost adapters), which do not use tests/test.h's runner.
#ifndef LACUNA_TEST_CXX_HPP
#define LACUNA_TEST_CXX_HPP

#include <cstdio>
#include <cstdlib>

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c);             \
            std::exit(1);                                                                          \
        }                                                                                          \
    } while (0)

#endif
