# portal - make targets. Every target installs or builds what it needs first.
#
#   make demo    the main job: boot the default guest in QEMU with the plugin's tour
#   make test    every test (what CI runs)
#   make build   libportal.so, debug (.build/debug) and release (.build/release)
#   make clean   remove build outputs (keeps the QEMU download cache)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

DEBUG_LIB   := .build/debug/libportal.so
RELEASE_LIB := .build/release/libportal.so
DEMO_ARCH   ?= x86_64

.PHONY: all setup build debug release qemu guests harness demo test test-swift test-tsan test-harness test-guests test-bench-build test-control clean bench asan-lib tsan-lib fuzz-lib fuzz fuzz-clean test-fuzz test-asan test-harness-tsan

all: build

setup:
	@scripts/setup.sh

debug: setup
	swift build

release: setup
	swift build -c release

build: debug release

qemu:
	@scripts/fetch-qemu.sh

guests:
	@Tests/guests/build.sh

harness:
	@$(MAKE) --no-print-directory -C Tests/harness harness

# The main job: fetch QEMU and build what is missing, boot the default guest
# with the plugin's built-in tour, print the guest's serial output and the
# plugin's report. Exits 0 only if the guest and the plugin both say PASS.
demo: release qemu guests
	@echo "== booting the $(DEMO_ARCH) test guest in QEMU with $(RELEASE_LIB),demo=tour"
	@Tests/guests/run.sh $(DEMO_ARCH) -plugin $(RELEASE_LIB),demo=tour 2>&1 | tee .build/demo.log
	@grep -qx "portal: tour: PASS" .build/demo.log && echo "== demo: PASS" || { echo "== demo: FAIL"; exit 1; }

TEST_SUITES := test-swift test-tsan test-harness test-guests test-control test-bench-build test-asan test-harness-tsan test-fuzz
# make stops at the first failing suite, so reaching these lines means all passed.
test: $(TEST_SUITES)
	@echo "make test: every suite passed ($(TEST_SUITES:test-%=%))"
	@echo "suites: $(words $(TEST_SUITES)) passed, 0 failed"

# The engine's unit tests (Swift Testing).
test-swift: setup
	swift test

# The same tests under ThreadSanitizer, in their own build folder.
test-tsan: setup
	swift test --sanitize=thread --scratch-path .build-tsan

# The C harness: a mock emulator and guest that dlopen the built library.
test-harness: debug harness
	Tests/harness/build/harness --lib $(DEBUG_LIB)

# Every bare-metal guest in real QEMU 11.1, plus the MIPS refusal.
test-guests: debug qemu guests
	Tests/guests/test.sh $(DEBUG_LIB)

# The control socket (control=PATH) in real QEMU: the unmodified qemu.qmp
# client and qmp-shell (PyPI, in a private venv), raw sockets and portalctl
# against the x86_64 control guests.
test-control: debug qemu guests
	python=$$(scripts/python-env.sh) && $$python Tests/control/test_control.py \
	    --lib $(DEBUG_LIB) --portalctl .build/debug/portalctl

# The benchmark programs still build against the headers, and the engine
# bench runs its own checks for a few seconds on the debug library (timings
# are `make bench`'s business).
test-bench-build: debug
	bash bench/build-floor.sh
	@mkdir -p bench/build
	$${CC:-gcc} -O2 -Wall -Wextra -Werror -std=gnu11 -Iinclude -rdynamic bench/engine-bench.c \
	    -o bench/build/engine-bench-check -ldl -lpthread
	bench/build/engine-bench-check --lib $(DEBUG_LIB) --reps 1 --trips 2000 > bench/build/check.log
	@grep -q '"failures": 0' bench/build/check.log || { tail -5 bench/build/check.log; exit 1; }

clean: fuzz-clean
	rm -rf .build .build-tsan Tests/guests/build Tests/harness/build bench/build

# Benchmarks (not part of `make test`): the engine through the real release
# library in a mock emulator, callgrind instruction counts, and QEMU guest
# loops against a hand-written floor plugin. Prints a table and writes
# bench/results/<timestamp>.json and bench/results/latest.json.
# `make bench BENCH_ARGS=--quick` for a short, noisier smoke run.
BENCH_ARGS ?=
bench: release qemu
	python3 bench/run.py --no-swift-build $(BENCH_ARGS)

# ---- Sanitizers and fuzzing (Tests/fuzz/README.md) ----
# Instrumented builds of libportal.so, each in its own scratch folder:
# AddressSanitizer, ThreadSanitizer, and ASan + libFuzzer coverage.
ASAN_LIB := .build-asan/debug/libportal.so
TSAN_LIB := .build-tsan-lib/debug/libportal.so
FUZZ_LIB := .build-fuzz/debug/libportal.so
# `make fuzz FUZZ_SECONDS=N` searches from the kept corpus; make test runs
# 60 s as CI does: seed FUZZ_TEST_SEED, seeds only. FUZZ_SKIP=hugelen (say)
# steers around findings still being fixed (Tests/fuzz/README.md).
FUZZ_SECONDS ?= 300
FUZZ_TEST_SEED ?= 1
FUZZ_SKIP ?=

asan-lib: setup
	swift build --sanitize=address --scratch-path .build-asan --product portal

tsan-lib: setup
	swift build --sanitize=thread --scratch-path .build-tsan-lib --product portal

fuzz-lib: setup
	swift build --sanitize=address --scratch-path .build-fuzz --product portal -Xswiftc -sanitize=fuzzer -Xcc -fsanitize=fuzzer-no-link

# libFuzzer on the real library through the plugin ABI, for FUZZ_SECONDS.
fuzz: debug fuzz-lib
	$(MAKE) -C Tests/fuzz run BUDGET=$(FUZZ_SECONDS) SKIP=$(FUZZ_SKIP) \
	    LIB=$(CURDIR)/$(FUZZ_LIB) SEED_LIB=$(CURDIR)/$(DEBUG_LIB)

# 60 s from a fixed seed and the seeds alone, the start CI has (not input
# for input: Tests/fuzz/README.md). Fails on any crash, sanitizer report,
# leak, out-of-memory, timeout or heap growth.
test-fuzz: debug fuzz-lib
	$(MAKE) -C Tests/fuzz run BUDGET=60@$(FUZZ_TEST_SEED) SKIP=$(FUZZ_SKIP) \
	    LIB=$(CURDIR)/$(FUZZ_LIB) SEED_LIB=$(CURDIR)/$(DEBUG_LIB)

# The engine's unit tests (with the multi-threaded stress test) and every
# harness scenario under AddressSanitizer (+ UBSan for the C side), the
# library instrumented too.
test-asan: asan-lib
	$(MAKE) -C Tests/fuzz check-asan LIB=$(CURDIR)/$(ASAN_LIB)
	$(MAKE) -C Tests/fuzz check-swift-asan

# Every harness scenario (concurrent_threads: 8 vCPU threads) under
# ThreadSanitizer against the ThreadSanitizer build of the library.
test-harness-tsan: tsan-lib
	$(MAKE) -C Tests/fuzz check-tsan LIB=$(CURDIR)/$(TSAN_LIB)

fuzz-clean:
	rm -rf .build-asan .build-asan-test .build-tsan-lib .build-fuzz Tests/fuzz/build
