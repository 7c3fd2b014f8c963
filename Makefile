# Thin wrapper over CMake. Release build in build/ (demo, bench); test builds in build-test/
# (with the fault injector), build-asan/ (ASan+UBSan) and build-tsan/ (TSan).
JOBS  ?= $(shell nproc)
CMAKE ?= cmake

.PHONY: all demo test test-sanitize test-asan test-tsan test-valgrind soak fuzz bench install clean format

all: build/Makefile
	$(CMAKE) --build build -j $(JOBS)

build/Makefile:
	$(CMAKE) -S . -B build -DCMAKE_BUILD_TYPE=Release -DLACUNA_BUILD_TESTS=OFF

demo: all
	./build/tools/lacuna-bench demo

build-test/Makefile:
	$(CMAKE) -S . -B build-test -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLACUNA_FAULT_INJECTION=ON

test: build-test/Makefile
	$(CMAKE) --build build-test -j $(JOBS)
	cd build-test && ctest --output-on-failure -j $(JOBS)

# Not run in the sanitizer builds: the install test (it links an uninstrumented consumer), the
# Boost.Context test (Boost's own switches are not annotated) and the aarch64 run under qemu.
NOT_SANITIZED = install_consumers|test_boost_context|test_boost_fiber|aarch64

build-asan/Makefile:
	CC=clang $(CMAKE) -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DLACUNA_FAULT_INJECTION=ON \
	  -DLACUNA_SANITIZE=address,undefined -DLACUNA_BUILD_TOOLS=OFF

build-tsan/Makefile:
	CC=clang $(CMAKE) -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLACUNA_FAULT_INJECTION=ON \
	  -DLACUNA_SANITIZE=thread -DLACUNA_BUILD_TOOLS=OFF

test-asan: build-asan/Makefile
	$(CMAKE) --build build-asan -j $(JOBS)
	cd build-asan && ctest --output-on-failure -j $(JOBS) -E "$(NOT_SANITIZED)"

test-tsan: build-tsan/Makefile
	$(CMAKE) --build build-tsan -j $(JOBS)
	cd build-tsan && ctest --output-on-failure -j $(JOBS) -E "$(NOT_SANITIZED)"

test-sanitize: test-asan test-tsan

# memcheck over the pool and fiber tests (the fault-injection build): 0 errors, 0 definite leaks, in every
# forked test child too. Not test_guard (its deliberate wild writes are memcheck errors by design)
# nor test_memory_given_back (20 x 360 MiB of page touching: slow under valgrind, and its figures
# are the kernel's, which valgrind does not change).
VALGRIND_TESTS ?= test_pool_api test_pool_release test_pool_threads test_fault test_fork test_soak \
                  test_process test_fiber_api test_fiber_switch test_fiber_misuse test_fiber_signals \
                  test_fiber_stack test_fiber_parked test_pool_punch test_pool_defer test_pool_zero
VALGRIND ?= valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite

test-valgrind: build-test/Makefile
	$(CMAKE) --build build-test -j $(JOBS)
	set -e; for t in $(VALGRIND_TESTS); do echo "== valgrind $$t"; \
	  LACUNA_UNDER_VALGRIND=1 $(VALGRIND) ./build-test/tests/$$t; done

# libFuzzer over the pool API (tests/fuzz/fuzz_pool.c) for FUZZ_SECONDS, from the committed seed
# corpus; new inputs go to build-fuzz/corpus, crashes to build-fuzz/ (the committed corpus is
# only read).
FUZZ_SECONDS ?= 60
build-fuzz/Makefile:
	CC=clang $(CMAKE) -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLACUNA_FAULT_INJECTION=ON \
	  -DLACUNA_SANITIZE=address,undefined -DLACUNA_FUZZ=ON -DLACUNA_BUILD_TESTS=OFF -DLACUNA_BUILD_TOOLS=OFF

fuzz: build-fuzz/Makefile
	$(CMAKE) --build build-fuzz -j $(JOBS) --target fuzz_pool
	mkdir -p build-fuzz/corpus
	cd build-fuzz && ./tests/fuzz/fuzz_pool -max_total_time=$(FUZZ_SECONDS) -timeout=20 \
	  -print_final_stats=1 corpus ../tests/fuzz/corpus

# The model test at scale: SOAK_OPS random operations (a third per pool configuration) on 2 threads.
SOAK_OPS ?= 100000000
soak: build-test/Makefile
	$(CMAKE) --build build-test -j $(JOBS)
	LACUNA_SOAK_OPS=$(SOAK_OPS) LACUNA_TEST_TIMEOUT=3600 ./build-test/tests/test_soak

bench: all
	tools/bench.sh build

install: all
	$(CMAKE) --install build

format:
	clang-format -i include/*.h include/lacuna/*.h src/*.c src/*.h tests/*.c tests/*.h tests/fuzz/*.c tools/*.c tools/*.h examples/*.c 2>/dev/null || true

clean:
	rm -rf build build-test build-asan build-tsan build-fuzz
