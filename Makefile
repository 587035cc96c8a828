# portal - make targets. Every target installs or builds what it needs first.
#
#   make demo    the main job: boot the Linux guest in QEMU with the plugin and the
#                Linux tour (make demo DEMO=bare DEMO_ARCH=riscv64: a bare-metal guest)
#   make test    every test (what CI runs)
#   make build   libportal.so, debug (.build/debug) and release (.build/release)
#   make install PREFIX=DIR   the SDK: lib/libportal.so, include/portal/*.h,
#                lib/pkgconfig/portal.pc (release build)
#   make clean   remove build outputs (keeps the QEMU download cache)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

DEBUG_LIB   := .build/debug/libportal.so
RELEASE_LIB := .build/release/libportal.so
# The demonstration module (Tests/demo): module_arg=tour serves the test
# guests, module_arg=bench the benchmarks' Swift workloads, module_arg=linux
# and operations the Linux guest (make demo, make test-linux).
DEBUG_DEMO   := Tests/demo/.build/debug/libPortalDemo.so
RELEASE_DEMO := Tests/demo/.build/release/libPortalDemo.so
DEMO_ARCH   ?= x86_64
PREFIX      ?= /usr/local
# Which build `make install` installs (make test installs the debug one).
INSTALL_CONFIG ?= release

# Every build of libportal.so records its SONAME, libportal.so: an analysis
# module linked with -lportal (or built by SwiftPM against this package)
# names libportal.so as a dependency, and the dynamic linker binds that to the
# library the emulator already loaded, whatever its path. Not in
# Package.swift: a package with unsafe flags cannot be a versioned dependency.
SWIFT_LINK := -Xlinker -soname=libportal.so
# Release builds of the round-trip path (measured with `make bench`):
# cross-module optimisation lets the plugin inline the engine's small public
# helpers; dynamic exclusivity checks are off: they were a quarter of a C
# round trip's instructions, and the state they guard (a conversation's, a
# vCPU's) is only touched by the one vCPU thread holding the conversation's
# claim. Debug builds and `swift test` keep every check.
SWIFT_RELEASE := -Xswiftc -cross-module-optimization -Xswiftc -enforce-exclusivity=unchecked

.PHONY: test-api-docs all setup build debug release install test-sdk demo-module demo-module-release qemu linux linux-arm64 test-linux-arm64 guests harness demo test test-linux test-swift test-tsan test-harness test-guests test-bench-build test-control clean bench asan-lib tsan-lib fuzz-lib fuzz fuzz-clean test-fuzz test-asan test-harness-tsan

all: build

setup:
	@scripts/setup.sh

debug: setup
	swift build $(SWIFT_LINK)

release: setup
	swift build -c release $(SWIFT_LINK) $(SWIFT_RELEASE)

# The demonstration module, a SwiftPM package of its own that depends on
# this one (as any Swift analysis module does).
demo-module: setup
	swift build --package-path Tests/demo

demo-module-release: setup
	swift build -c release --package-path Tests/demo $(SWIFT_RELEASE)

# The SDK a C analysis module builds against (README, "Writing analysis code").
install: $(INSTALL_CONFIG)
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include/portal
	install -m 755 .build/$(INSTALL_CONFIG)/libportal.so $(DESTDIR)$(PREFIX)/lib/libportal.so
	install -m 644 include/portal/portal.h include/portal/panda.h $(DESTDIR)$(PREFIX)/include/portal/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e "s|@VERSION@|$$(sed -n 's/^#define PORTAL_API_VERSION \([0-9]*\)u$$/\1/p' include/portal/portal.h)|" \
	    portal.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/portal.pc

build: debug release

qemu:
	@scripts/fetch-qemu.sh

guests:
	@Tests/guests/build.sh

# The Linux test guest: Debian's kernel and headers, busybox, the portal
# guest module and an initramfs, in .cache/linux (Tests/guests/linux/).
linux:
	@scripts/fetch-linux.sh

# The same for Debian's arm64 kernel, in .cache/linux-arm64 (installs the
# aarch64 cross compilers with apt-get if they are missing).
linux-arm64:
	@LINUX_ARCH=arm64 scripts/fetch-linux.sh

harness:
	@$(MAKE) --no-print-directory -C Tests/harness harness

# The main job: fetch QEMU, the Linux guest and build what is missing, boot
# Debian's Linux 6.1 with the portal guest module and the demonstration
# module's Linux tour (module_arg=linux, the typed Swift operations), and
# compare every value the host read with the guest's own view
# (Tests/guests/linux/demo.sh). Exits 0 only on PASS.
# `make demo DEMO=bare [DEMO_ARCH=riscv64]`: a bare-metal test guest with the
# tour (module_arg=tour) instead.
DEMO ?= linux
demo: release demo-module-release qemu
ifeq ($(DEMO),linux)
	@$(MAKE) --no-print-directory linux
	@Tests/guests/linux/demo.sh $(RELEASE_LIB) $(RELEASE_DEMO)
else ifeq ($(DEMO),bare)
	@$(MAKE) --no-print-directory guests
	@echo "== booting the $(DEMO_ARCH) test guest in QEMU with $(RELEASE_LIB),load=$(RELEASE_DEMO),module_arg=tour"
	@Tests/guests/run.sh $(DEMO_ARCH) -plugin $(RELEASE_LIB),load=$(CURDIR)/$(RELEASE_DEMO),module_arg=tour 2>&1 | tee .build/demo.log
	@grep -qx "portal: tour: PASS" .build/demo.log && echo "== demo: PASS" || { echo "== demo: FAIL"; exit 1; }
else
	$(error DEMO=$(DEMO): expected linux (the default) or bare)
endif

TEST_SUITES := test-api-docs test-swift test-tsan test-harness test-guests test-sdk test-linux test-linux-arm64 test-control test-bench-build test-asan test-harness-tsan test-fuzz
# make stops at the first failing suite, so reaching these lines means all passed.
test: $(TEST_SUITES)
	@echo "make test: every suite passed ($(TEST_SUITES:test-%=%))"
	@echo "suites: $(words $(TEST_SUITES)) passed, 0 failed"

# Every public declaration of the Swift API has a doc comment, with
# Parameters/Returns/Throws where they apply (scripts/check-api-docs.py).
# The checker's own test first: on Tests/api-docs/Fixture.swift it must
# report exactly the defects Tests/api-docs/expected.txt lists.
test-api-docs:
	@status=0; found="$$(python3 scripts/check-api-docs.py Tests/api-docs/Fixture.swift)" || status=$$?; \
	if [ $$status -ne 1 ] || [ "$$found" != "$$(cat Tests/api-docs/expected.txt)" ]; then \
		echo "test-api-docs: the checker missed or invented defects in Tests/api-docs/Fixture.swift:"; \
		echo "$$found"; exit 1; fi
	python3 scripts/check-api-docs.py Sources

# The engine's unit tests (Swift Testing).
test-swift: setup
	swift test $(SWIFT_LINK)

# The same tests under ThreadSanitizer, in their own build folder.
test-tsan: setup
	swift test --sanitize=thread --scratch-path .build-tsan

# The C harness: a mock emulator and guest that dlopen the built library.
# The module_* scenarios (load= under the PANDA-style front end) need
# Tests/harness/build/module.so, so they run only when named.
test-harness: debug harness
	Tests/harness/build/harness --lib $(DEBUG_LIB)
	Tests/harness/build/harness --lib $(DEBUG_LIB) module_load_serves module_load_refusals

# Every bare-metal guest in real QEMU 11.1, plus the MIPS refusal.
test-guests: debug demo-module qemu guests
	Tests/guests/test.sh $(DEBUG_LIB) $(DEBUG_DEMO)

# The SDK as a user gets it: make install into a scratch prefix, the C
# example built with pkg-config alone and the Swift one as its own SwiftPM
# package, each run on every bare-metal guest in QEMU, and every refusal of
# load= (Tests/sdk/test.sh).
test-sdk: debug qemu guests
	Tests/sdk/test.sh

# A real Linux guest (Debian's 6.1 kernel, 2 vCPUs) with the portal module,
# one boot: every op the module serves from C (host/checks.c, loaded with
# load=), then every typed Swift operation (the demonstration module's
# module_arg=operations), each checked against the guest's own view.
test-linux: debug demo-module qemu linux
	Tests/guests/linux/test.sh $(DEBUG_LIB) $(DEBUG_DEMO)

# The same module cross-built for Debian's arm64 kernel, in qemu-system-aarch64 -M virt.
test-linux-arm64: debug demo-module qemu linux-arm64
	LINUX_ARCH=arm64 Tests/guests/linux/test.sh $(DEBUG_LIB) $(DEBUG_DEMO)

# The control socket (control=PATH) in real QEMU: the unmodified qemu.qmp
# client and qmp-shell (PyPI, in a private venv), raw sockets, portalctl and
# the MCP client against the x86_64 control guests, then the typed queries
# against one boot of the Linux guest.
test-control: debug qemu guests linux
	python=$$(scripts/python-env.sh) && $$python Tests/control/test_control.py \
	    --lib $(DEBUG_LIB) --portalctl .build/debug/portalctl --linux

# The benchmark programs still build against the headers, the Swift runtime
# floor (bench/swift-runtime-floor) builds and runs briefly, and the engine
# bench runs its own checks for a few seconds on the debug library (timings
# are `make bench`'s business).
test-bench-build: debug demo-module
	bash bench/build-floor.sh
	@mkdir -p bench/build
	$${CC:-gcc} -O2 -Wall -Wextra -Werror -std=gnu11 -Iinclude -rdynamic bench/engine-bench.c \
	    -o bench/build/engine-bench-check -ldl -lpthread
	bench/build/engine-bench-check --lib $(DEBUG_LIB) --module $(DEBUG_DEMO) --reps 1 --trips 2000 > bench/build/check.log
	@grep -q '"failures": 0' bench/build/check.log || { tail -5 bench/build/check.log; exit 1; }
	swift build -c release --package-path bench/swift-runtime-floor -Xswiftc -enforce-exclusivity=unchecked
	bench/swift-runtime-floor/.build/release/swift-runtime-floor --trips 1000 --reps 2 > bench/build/runtime-floor.log
	@test "$$(grep -c '^{"ns_per_round_trip": [0-9.]*}$$' bench/build/runtime-floor.log)" = 2 || { cat bench/build/runtime-floor.log; exit 1; }

clean: fuzz-clean
	rm -rf .build .build-tsan bench/swift-runtime-floor/.build Tests/demo/.build Examples/swift-count/.build Tests/guests/build Tests/guests/linux/build Tests/harness/build bench/build

# Benchmarks (not part of `make test`): the engine through the real release
# library in a mock emulator, callgrind instruction counts, and QEMU guest
# loops against a hand-written floor plugin, and the Linux guest's boot with
# no plugin, the floor plugin and libportal.so. Prints a table and writes
# bench/results/<timestamp>.json and bench/results/latest.json.
# `make bench BENCH_ARGS=--quick` for a short, noisier smoke run.
BENCH_ARGS ?=
bench: release demo-module-release qemu linux
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
	swift build --sanitize=address --scratch-path .build-asan --product portal $(SWIFT_LINK)

tsan-lib: setup
	swift build --sanitize=thread --scratch-path .build-tsan-lib --product portal $(SWIFT_LINK)

fuzz-lib: setup
	swift build --sanitize=address --scratch-path .build-fuzz --product portal $(SWIFT_LINK) -Xswiftc -sanitize=fuzzer -Xcc -fsanitize=fuzzer-no-link

# libFuzzer on the real library through the plugin ABI, for FUZZ_SECONDS.
fuzz: debug demo-module fuzz-lib
	$(MAKE) -C Tests/fuzz run BUDGET=$(FUZZ_SECONDS) SKIP=$(FUZZ_SKIP) DEMO=$(CURDIR)/$(DEBUG_DEMO) \
	    LIB=$(CURDIR)/$(FUZZ_LIB) SEED_LIB=$(CURDIR)/$(DEBUG_LIB)

# 60 s from a fixed seed and the seeds alone, the start CI has (not input
# for input: Tests/fuzz/README.md). Fails on any crash, sanitizer report,
# leak, out-of-memory, timeout or heap growth.
test-fuzz: debug demo-module fuzz-lib
	$(MAKE) -C Tests/fuzz run BUDGET=60@$(FUZZ_TEST_SEED) SKIP=$(FUZZ_SKIP) DEMO=$(CURDIR)/$(DEBUG_DEMO) \
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
