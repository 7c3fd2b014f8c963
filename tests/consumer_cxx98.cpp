/* <lacuna.h> from C++98: tests/consumer_c89.c compiled as C++. */
#include "consumer_c89.c"
