# Thin wrapper over CMake. Release build in build/ (demo, bench); test builds in build-test/
# (with the fault injector), build-asan/ (ASan+UBSan) and build-tsan/ (TSan).
JOBS  ?= $(shell nproc)
CMAKE ?= cmake

.PHONY: all demo test test-sanitize test-asan test-tsan bench install clean format

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

build-asan/Makefile:
	CC=clang $(CMAKE) -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DLACUNA_FAULT_INJECTION=ON \
	  -DLACUNA_SANITIZE=address,undefined -DLACUNA_BUILD_TOOLS=OFF

build-tsan/Makefile:
	CC=clang $(CMAKE) -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLACUNA_FAULT_INJECTION=ON \
	  -DLACUNA_SANITIZE=thread -DLACUNA_BUILD_TOOLS=OFF

test-asan: build-asan/Makefile
	$(CMAKE) --build build-asan -j $(JOBS)
	cd build-asan && ctest --output-on-failure -j $(JOBS) -L sanitize

test-tsan: build-tsan/Makefile
	$(CMAKE) --build build-tsan -j $(JOBS)
	cd build-tsan && ctest --output-on-failure -j $(JOBS) -L sanitize

test-sanitize: test-asan test-tsan

bench: all
	tools/bench.sh build

install: all
	$(CMAKE) --install build

format:
	clang-format -i include/*.h include/lacuna/*.h src/*.c src/*.h tests/*.c tests/*.h tools/*.c tools/*.h examples/*.c 2>/dev/null || true

clean:
	rm -rf build build-test build-asan build-tsan
