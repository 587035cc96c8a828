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

.PHONY: all setup build debug release qemu guests harness demo test test-swift test-tsan test-harness test-guests clean bench

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

test: test-swift test-tsan test-harness test-guests
	@echo "make test: all test suites passed"

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

clean:
	rm -rf .build .build-tsan Tests/guests/build Tests/harness/build bench/build

# Benchmarks (not part of `make test`): the engine through the real release
# library in a mock emulator, callgrind instruction counts, and QEMU guest
# loops against a hand-written floor plugin. Prints a table and writes
# bench/results/<timestamp>.json and bench/results/latest.json.
# `make bench BENCH_ARGS=--quick` for a short, noisier smoke run.
BENCH_ARGS ?=
bench: release qemu
	python3 bench/run.py --no-swift-build $(BENCH_ARGS)
