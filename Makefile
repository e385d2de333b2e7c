# Thin driver over CMake. `make test` and `make bench` are the two set-up
# commands; both install missing Debian packages first when run as root.

DEPS := cmake pkgconf gcc make libjemalloc-dev libatomic-ops-dev libcmocka-dev wrk gnuplot-nox
JOBS ?= 2
CMAKE ?= cmake
CTEST_FLAGS ?= --output-on-failure -j$(JOBS)
PREFIX ?= /usr/local

.PHONY: all deps build test test-asan test-tsan test-aarch64 bench format install clean

all: build

deps:
	@missing=""; for p in $(DEPS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "make deps: installing$$missing"; \
	    (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "make deps: missing packages; run: sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi

# name, build dir, extra cmake flags
define configure
	$(CMAKE) -S . -B $(1) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(2) >/dev/null
	$(CMAKE) --build $(1) -j$(JOBS)
endef

build: deps
	$(call configure,build,)

# The normal build, then the small-queue variant (4-slot local queues: overflow
# and stealing on nearly every push).
test: deps
	$(call configure,build,)
	cd build && ctest $(CTEST_FLAGS)
	$(call configure,build-smallq,-DRAVEL_LOCAL_QUEUE_SIZE=4 -DRAVEL_BUILD_BENCH=OFF)
	cd build-smallq && ctest $(CTEST_FLAGS)

test-asan: deps
	$(call configure,build-asan,-DRAVEL_SANITIZE=address -DRAVEL_BUILD_BENCH=OFF)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest $(CTEST_FLAGS)

test-tsan: deps
	$(call configure,build-tsan,-DRAVEL_SANITIZE=thread -DRAVEL_BUILD_BENCH=OFF)
	cd build-tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 ctest $(CTEST_FLAGS)

# The AArch64 fiber switch, cross-built and run under qemu-user.
test-aarch64:
	bash tests/cross/run-aarch64.sh

bench: deps
	$(CMAKE) -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DRAVEL_TESTING=OFF >/dev/null
	$(CMAKE) --build build-release -j$(JOBS) --target ravel-bench
	bash bench/run-bench.sh $(BENCH_ARGS)

format: deps
	@command -v clang-format >/dev/null || { echo "clang-format not installed"; exit 1; }
	clang-format -i include/*.h include/ravel/*.h executor/*.[ch] primitives/*.[ch] io/*.[ch] tests/*.c bench/*.[ch]

install: deps
	$(CMAKE) -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DRAVEL_TESTING=OFF -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null
	$(CMAKE) --build build-release -j$(JOBS)
	$(CMAKE) --install build-release

clean:
	rm -rf build build-smallq build-asan build-tsan build-release build-aarch64
