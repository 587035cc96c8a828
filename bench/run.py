#!/usr/bin/env python3
"""bench/run.py - the benchmarks behind `make bench` (not part of `make test`).

Builds what is missing, runs every measurement several times, prints one
table and writes bench/results/<timestamp>.json and bench/results/latest.json
(plus bench/results/<timestamp>/: callgrind profiles, their top functions and
allocation backtraces). Each figure is the median of several runs, with the
minimum and maximum.

  python3 bench/run.py [--quick] [--reps N] [--no-swift-build] [--no-qemu] [--no-callgrind]

What is measured (see bench/engine-bench.c for the engine figures):
  engine   the real .build/release/libportal.so in a mock emulator of its own
           (bench/engine-bench): one 8-byte READ round trip driven by a Swift
           async handler (the demo module's bench) and by a C step function, next to two
           floors run through the same mock guest (the guest alone, and a
           hand-written C host); 1, 64 and 4096 live conversations driven
           round-robin; 2 vCPU threads at once; 1 MiB bulk READ/WRITE (MB/s);
           heap allocations per round trip, counted by interposing malloc.
  callgrind  instructions (Ir) per round trip under valgrind --tool=callgrind,
           from two runs of different lengths (the difference cancels set-up):
           the engine in the mock emulator, and QEMU itself (its vCPU thread)
           with each plugin; top functions by self cost and calls per round
           trip go to bench/results/<timestamp>/callgrind-top-*.txt.
  traces   backtraces of the heap allocations of one whole conversation
           (alloc-trace-*.txt), and the objects swift_retain/swift_release
           touch on every round trip (bench/build/engine-bench-trace).
  qemu     QEMU 11.1, i386 and riscv64 bare-metal guests (Tests/guests,
           guest-bench / guest-noplugin-bench): ns per round trip seen by the
           guest loop = (wall time with N round trips - wall time with a few)
           / the difference, for libportal.so (the demo module's tour), the floor plugin
           bench/floor-plugin.c, and no plugin at all.
  qemu reads  the same guests (guest-read-bench): the tour's Swift handler
           times N 8-byte and N/64 4 KiB reads (Guest.read, Guest.readBytes)
           with direct memory (QEMU's own view of guest memory) and with
           direct_memory=off (portal READ round trips); the ratio's goal is 10x.
  linux    the Linux test guest (Tests/guests/linux, Debian's 6.1 kernel with
           the portal guest module, 2 vCPUs): seconds from QEMU's start until
           the guest has printed its own view ("view: end", the point where
           it waits for the host), with no plugin, the floor plugin and
           libportal.so with no work attached; ratios to no plugin.
           Needs scripts/fetch-linux.sh (make bench runs make linux).

Exit status: 0 when every measurement ran and checked out (a MISS against a
target is a finding, not a failure), 1 otherwise.
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
BUILD = os.path.join(BENCH, "build")
RESULTS = os.path.join(BENCH, "results")
LIB = os.path.join(ROOT, ".build", "release", "libportal.so")
# The demonstration module (Tests/demo): module_arg=bench for the engine
# bench, module_arg=tour for the QEMU guest loops.
DEMO = os.path.join(ROOT, "Tests", "demo", ".build", "release", "libPortalDemo.so")
DRIVER = os.path.join(BUILD, "engine-bench")
FLOOR = os.path.join(BUILD, "libfloor.so")
# The Swift concurrency runtime's own share of a Swift round trip, without the
# engine (bench/swift-runtime-floor): a package of its own, built like the
# library's release (dynamic exclusivity checks off).
RUNTIME_FLOOR_PACKAGE = os.path.join(BENCH, "swift-runtime-floor")
RUNTIME_FLOOR = os.path.join(RUNTIME_FLOOR_PACKAGE, ".build", "release", "swift-runtime-floor")
TOOLBIN = os.environ.get("SWIFT_TOOLCHAIN_BIN", "/opt/swift/usr/bin")

# Targets (the issue): (comparison, value).
TARGET_RT_SWIFT_NS = 100.0
TARGET_RT_C_NS = 60.0
TARGET_IR_SWIFT = 1800.0       # instructions per Swift round trip (issue 13)
TARGET_FLAT_RATIO = 1.25      # "flat": 4096 live conversations cost at most 1.25x one
TARGET_ALLOC_C = 0.0
TARGET_ALLOC_SWIFT = 1.0
TARGET_QEMU_RATIO = 1.25
TARGET_BULK_MBS = 500.0
TARGET_DIRECT_SPEEDUP = 10.0   # a direct read at least 10x faster than a portal round trip

errors = []


def log(message):
    print(f"bench: {message}", file=sys.stderr, flush=True)


def run(cmd, **kw):
    """Runs cmd (list); raises with its output on failure."""
    result = subprocess.run(cmd, cwd=kw.pop("cwd", ROOT), capture_output=True, text=True, **kw)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def stats(samples):
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples),
            "samples": [round(s, 3) for s in samples]}


# ---- building -------------------------------------------------------------

def newer(target, *sources):
    if not os.path.exists(target):
        return True
    t = os.path.getmtime(target)
    return any(os.path.getmtime(s) > t for s in sources)


def build(args):
    os.makedirs(BUILD, exist_ok=True)
    if not args.no_swift_build:
        log("make release demo-module-release")
        run(["make", "--no-print-directory", "-C", ROOT, "release", "demo-module-release"])
    for path in (LIB, DEMO):
        if not os.path.exists(path):
            raise RuntimeError(f"{path} is missing (make release demo-module-release)")
    log("swift build bench/swift-runtime-floor")
    run(["swift", "build", "-c", "release", "--package-path", RUNTIME_FLOOR_PACKAGE,
         "-Xswiftc", "-enforce-exclusivity=unchecked"])
    src = os.path.join(BENCH, "engine-bench.c")
    headers = [os.path.join(ROOT, "include", "portal", h) for h in ("panda.h", "portal.h")]
    headers.append(os.path.join(ROOT, "Tests", "harness", "guest_module.h"))
    if newer(DRIVER, src, *headers, os.path.abspath(__file__)):
        cc = os.environ.get("CC", "gcc")
        log(f"building bench/build/engine-bench with {cc}")
        flags = ["-O2", "-g", "-Wall", "-Wextra", "-Werror", "-std=gnu11", "-I", os.path.join(ROOT, "include"),
                 "-rdynamic"]
        run([cc, *flags, src, "-o", DRIVER, "-ldl", "-lpthread"])
        # The same with swift_retain/swift_release interposed, for --trace-retains only.
        run([cc, *flags, "-DTRACE_RETAINS", src, "-o", DRIVER + "-trace", "-ldl", "-lpthread"])
    if not args.no_qemu or not args.no_linux:
        run([os.path.join(BENCH, "build-floor.sh")])
        log("scripts/fetch-qemu.sh")
        run([os.path.join(ROOT, "scripts", "fetch-qemu.sh")])
    if not args.no_qemu and not args.only_linux:
        for n in sorted({args.qemu_small, args.qemu_big, *args.cg_qemu_trips}):
            env = dict(os.environ, BENCH_N=str(n), BUILD_DIR=guest_dir(n))
            run([os.path.join(ROOT, "Tests", "guests", "build.sh")], env=env)


def guest_dir(n):
    return os.path.join(BUILD, f"guests-{n}")


# ---- engine (mock emulator) -------------------------------------------------

def engine(args):
    cmd = [DRIVER, "--lib", LIB, "--module", DEMO, "--reps", str(args.reps), "--trips", str(args.trips)]
    log(f"engine: {' '.join(os.path.relpath(c, ROOT) if c.startswith(ROOT) else c for c in cmd)}")
    started = time.monotonic()
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    metrics = {}
    for line in result.stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        obj = json.loads(line)
        if "metric" in obj:
            metrics[obj["metric"]] = obj
    if result.returncode != 0:
        errors.append(f"engine-bench exited {result.returncode}: {result.stderr.strip()[-2000:]}")
    problems = [l for l in result.stderr.splitlines() if "FAILED" in l or l.startswith("portal: ")]
    if problems:
        errors.extend(f"engine-bench: {p}" for p in problems)
    log(f"engine: {time.monotonic() - started:.0f} s")
    result = subprocess.run([RUNTIME_FLOOR, "--reps", str(args.reps), "--trips", str(args.trips)], cwd=ROOT,
                            capture_output=True, text=True)
    samples = [json.loads(line)["ns_per_round_trip"] for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or len(samples) != args.reps:
        errors.append(f"swift-runtime-floor exited {result.returncode}: {result.stderr.strip()[-2000:]}")
    else:
        metrics["rt.swift_runtime"] = {"metric": "rt.swift_runtime", "samples": samples}
    return metrics


def alloc_traces(outdir):
    """Backtraces of the allocations of one whole conversation, symbolized."""
    traces = {}
    for kind in ("c", "swift"):
        result = subprocess.run([DRIVER, "--lib", LIB, "--module", DEMO, "--trace-allocs", kind], cwd=ROOT,
                                capture_output=True, text=True)
        text = symbolize(result.stderr)
        path = os.path.join(outdir, f"alloc-trace-{kind}.txt")
        with open(path, "w") as f:
            f.write(text)
        traces[kind] = os.path.relpath(path, ROOT)
    return traces


def retain_traces():
    """The objects whose reference counts change on every steady-state round trip."""
    out = {}
    for kind in ("c", "swift"):
        result = subprocess.run([DRIVER + "-trace", "--lib", LIB, "--module", DEMO, "--trace-retains", kind], cwd=ROOT,
                                capture_output=True, text=True)
        if result.returncode != 0:
            errors.append(f"engine-bench-trace --trace-retains {kind}: exit {result.returncode}: {result.stderr[-800:]}")
            continue
        rows = [json.loads(l) for l in result.stdout.splitlines() if l.startswith("{")]
        out[kind] = {"objects": [r for r in rows if "object" in r],
                     "totals": next((r for r in rows if "total_retains_per_round_trip" in r), {})}
    return out


def symbolize(text):
    """Frames `OBJ(+0xOFF)[...]` get function and line from llvm-symbolizer; all names are demangled."""
    symbolizer = os.path.join(TOOLBIN, "llvm-symbolizer")
    out = []
    for line in text.splitlines():
        m = re.match(r"^(\S+)\(\+0x([0-9a-f]+)\)\[", line)
        if m and os.path.exists(symbolizer) and os.path.exists(m.group(1)):
            r = subprocess.run([symbolizer, f"--obj={m.group(1)}", "--functions=linkage", "--inlining",
                                hex(int(m.group(2), 16) - 1)], capture_output=True, text=True)
            frames = [l for l in r.stdout.splitlines() if l.strip()]
            pairs = [f"{demangle(frames[i])} at {frames[i + 1]}" for i in range(0, len(frames) - 1, 2)]
            out.append(f"{os.path.basename(m.group(1))}: " + " <- inlined in ".join(pairs) if pairs else line)
            continue
        m = re.match(r"^(\S+)\(([^+)]+)\+0x[0-9a-f]+\)\[", line)
        if m:
            out.append(f"{os.path.basename(m.group(1))}: {demangle(m.group(2))}")
            continue
        out.append(line)
    return "\n".join(out) + "\n"


_demangle_cache = {}


def demangle(name):
    if not name.startswith(("$s", "_$s", "$S", "_T")):
        return name
    if name not in _demangle_cache:
        tool = os.path.join(TOOLBIN, "swift-demangle")
        try:
            r = subprocess.run([tool, "--simplified", "--compact", name], capture_output=True, text=True)
            _demangle_cache[name] = r.stdout.strip() or name
        except OSError:
            _demangle_cache[name] = name
    return _demangle_cache[name]


# ---- callgrind ---------------------------------------------------------------

def ensure_valgrind():
    if not shutil.which("valgrind"):
        log("callgrind: valgrind is missing; trying apt-get install valgrind")
        subprocess.run(["apt-get", "install", "-y", "-q", "valgrind"], capture_output=True)
    if not shutil.which("valgrind"):
        errors.append("callgrind: valgrind is not installed")
        return False
    return True


def stripped_library():
    """Valgrind 3.19 cannot read the DWARF 5 of Swift 6's toolchain: profile a
    copy without debug sections (the symbol table stays, so names do too)."""
    stripped = os.path.join(BUILD, "libportal-nodebug.so")
    if newer(stripped, LIB):
        objcopy = os.path.join(TOOLBIN, "llvm-objcopy")
        if not os.path.exists(objcopy):
            objcopy = "objcopy"
        run([objcopy, "--strip-debug", LIB, stripped])
    return stripped


def profile(cmd, path, env=None, check=None, busiest_thread=False):
    """Runs cmd under callgrind; returns (total Ir, calls by callee, self Ir by function) or None.
    busiest_thread: profile threads apart and keep QEMU's vCPU thread (else the busiest)."""
    started = time.monotonic()
    extra = ["--separate-threads=yes"] if busiest_thread else []
    result = subprocess.run(["valgrind", "--tool=callgrind", *extra, f"--callgrind-out-file={path}", *cmd],
                            cwd=ROOT, capture_output=True, text=True, env=env)
    ok = check(result) if check else result.returncode == 0
    if not ok:
        errors.append(f"callgrind: {' '.join(cmd)[-200:]}: exit {result.returncode}: "
                      f"{result.stdout[-300:]} {result.stderr[-1200:]}")
        return None
    if busiest_thread:
        parts = [f"{path}-{n}" for n in sorted(os.path.basename(f)[len(os.path.basename(path)) + 1:]
                                               for f in os.listdir(os.path.dirname(path))
                                               if os.path.basename(f).startswith(os.path.basename(path) + "-"))]
        parts = [f for f in parts if os.path.exists(f)]
        # The vCPU thread signals its creation; at a few round trips the
        # main thread (QEMU's set-up) can still be the busiest one.
        vcpu = [f for f in parts if re.search(r"^c?fn=\(\d+\) cpu_thread_signal_created$",
                                              open(f).read(), re.M)]
        busiest = max(vcpu or parts, key=callgrind_total)
        for f in parts:
            if f != busiest:
                os.remove(f)
        os.replace(busiest, path)
    log(f"callgrind: {os.path.basename(path)}: {callgrind_total(path):,} Ir ({time.monotonic() - started:.0f} s)")
    return callgrind_total(path), callgrind_calls(path), self_costs(path)


def differential(short, long_, n_short, n_long):
    """Per round trip: Ir, calls per callee and self Ir per function, from two profiles."""
    d = n_long - n_short
    per = (long_[0] - short[0]) / d
    calls = {n: (long_[1].get(n, 0) - short[1].get(n, 0)) / d for n in set(long_[1]) | set(short[1])}
    costs = {k: (long_[2].get(k, 0) - short[2].get(k, 0)) / d for k in set(long_[2]) | set(short[2])}
    top_calls = sorted(((v, n) for n, v in calls.items() if v >= 0.5), reverse=True)[:25]
    top = sorted(((v, k) for k, v in costs.items() if v >= 0.5), reverse=True)[:40]
    return {"ir_per_round_trip": round(per, 1),
            "top_self": [{"ir_per_round_trip": round(v, 1), "percent": round(100 * v / per, 1) if per else 0,
                          "function": demangle(k[0]), "object": os.path.basename(k[1])} for v, k in top],
            "calls_per_round_trip": [{"function": demangle(n), "calls": round(v, 2)} for v, n in top_calls]}


def write_top(path, title, res):
    with open(path, "w") as f:
        f.write(f"{title}: {res['ir_per_round_trip']:.1f} Ir per round trip\n\n"
                "self cost per round trip (difference of two runs / difference of round trips)\n")
        for row in res["top_self"]:
            f.write(f"{row['ir_per_round_trip']:10.1f}  {row['percent']:5.1f}%  {row['function']}  [{row['object']}]\n")
        f.write("\ncalls per round trip\n")
        for row in res["calls_per_round_trip"]:
            f.write(f"{row['calls']:8.2f}  {row['function']}\n")


def callgrind(args, outdir):
    """The engine in the mock emulator: only cg_measured() is collected."""
    if not ensure_valgrind():
        return {}
    lib = stripped_library()
    short, long_ = args.cg_trips
    out = {}
    for kind in ("null", "floor", "c", "swift"):
        runs = [profile(["--toggle-collect=cg_measured", DRIVER, "--lib", lib, "--module", DEMO, "--callgrind", kind,
                         "--trips", str(n)], os.path.join(outdir, f"callgrind.{kind}.{n}.out"))
                for n in (short, long_)]
        if None in runs:
            continue
        out[kind] = differential(runs[0], runs[1], short, long_)
        out[kind]["totals"] = {str(short): runs[0][0], str(long_): runs[1][0]}
        write_top(os.path.join(outdir, f"callgrind-top-{kind}.txt"), f"engine, {kind}", out[kind])
    runs = [profile(["--toggle-collect=*roundTrips*", RUNTIME_FLOOR, "--trips", str(n)],
                    os.path.join(outdir, f"callgrind.swift-runtime.{n}.out")) for n in (short, long_)]
    if None not in runs:
        out["swift_runtime"] = differential(runs[0], runs[1], short, long_)
        out["swift_runtime"]["totals"] = {str(short): runs[0][0], str(long_): runs[1][0]}
        write_top(os.path.join(outdir, "callgrind-top-swift-runtime.txt"), "Swift runtime alone",
                  out["swift_runtime"])
    return out


# How Tests/guests/run.sh boots each guest, and how scripts/qemu runs the
# fetched QEMU (its own loader and libraries), for running QEMU under valgrind.
QEMU_ROOT = os.path.join(ROOT, ".cache", "qemu", "root")
# Under valgrind the i386 PC's boot (SeaBIOS) spins on wall-clock timers, so
# the vCPU thread's instruction count varies by billions from run to run;
# -icount ties guest time to guest instructions and makes it repeatable
# (it adds the same instruction counting to every variant).
QEMU_MACHINES = {
    "i386": ("qemu-system-i386", ["-M", "pc", "-cpu", "qemu32", "-m", "64M",
                                  "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
                                  "-icount", "shift=0,sleep=off"]),
    "riscv64": ("qemu-system-riscv64", ["-M", "virt", "-bios", "none", "-m", "64M"]),
}


def qemu_command(arch, elf, plugin):
    binary, machine = QEMU_MACHINES[arch]
    libpath = f"{QEMU_ROOT}/usr/lib/x86_64-linux-gnu:{QEMU_ROOT}/lib/x86_64-linux-gnu"
    cmd = [f"{QEMU_ROOT}/usr/lib64/ld-linux-x86-64.so.2", "--library-path", libpath,
           f"{QEMU_ROOT}/usr/bin/{binary}", "-L", f"{QEMU_ROOT}/usr/share/qemu", "-L",
           f"{QEMU_ROOT}/usr/share/seabios", *machine, "-display", "none", "-monitor", "none", "-no-reboot",
           "-serial", "stdio", "-kernel", elf]
    if plugin:
        cmd += ["-plugin", plugin]
    return cmd


def callgrind_qemu(args, outdir):
    """QEMU itself under callgrind: Ir per guest round trip, by difference."""
    if not ensure_valgrind():
        return {}
    lib = stripped_library()
    short, long_ = args.cg_qemu_trips
    env = dict(os.environ, QEMU_MODULE_DIR=f"{QEMU_ROOT}/usr/lib/x86_64-linux-gnu/qemu")
    out = {}
    for arch in args.cg_qemu_arches:
        out[arch] = {}
        for variant in QEMU_VARIANTS:
            runs = []
            for n in (short, long_):
                binary = "guest-noplugin-bench" if variant == "noplugin" else "guest-bench"
                plugin = {"noplugin": None, "floor": FLOOR, "libportal": f"{lib},load={DEMO},module_arg=tour,log=error"}[variant]
                # Now and then a run pays for extra work the guest did not
                # ask for (flushes of QEMU's translated code and
                # re-translation, billions of instructions; twice in a row
                # once): the lowest run is the repeatable figure, and more
                # runs are made until two agree within 1%.
                tries = []
                for attempt in range(args.cg_qemu_tries + 3):
                    result = profile(
                        ["--smc-check=all-non-file",
                         *qemu_command(arch, os.path.join(guest_dir(n), arch, f"{binary}.elf"), plugin)],
                        os.path.join(outdir, f"callgrind.qemu.{arch}.{variant}.{n}.{attempt}.out"), env=env,
                        check=lambda r: "RESULT: PASS" in r.stdout and "portal: error" not in r.stderr,
                        busiest_thread=True)
                    if result is not None:
                        tries.append(result)
                    totals = sorted(t[0] for t in tries)
                    if attempt + 1 >= args.cg_qemu_tries and len(totals) >= 2 and totals[1] <= totals[0] * 1.01:
                        break
                runs.append(min(tries, key=lambda t: t[0]) if tries else None)
            if None in runs:
                continue
            if runs[1][0] <= runs[0][0]:
                errors.append(f"callgrind: QEMU {arch} {variant}: the {long_}-round-trip run counted no more "
                              f"instructions than the {short}-round-trip one ({runs[1][0]:,} <= {runs[0][0]:,} Ir); "
                              "no figure")
                continue
            out[arch][variant] = differential(runs[0], runs[1], short, long_)
            write_top(os.path.join(outdir, f"callgrind-top-qemu-{arch}-{variant}.txt"),
                      f"QEMU {arch}, {variant}", out[arch][variant])
        lp, fl = out[arch].get("libportal"), out[arch].get("floor")
        if lp and fl and fl["ir_per_round_trip"] > 0:
            out[arch]["ratio_libportal_to_floor"] = round(lp["ir_per_round_trip"] / fl["ir_per_round_trip"], 3)
    return out


def callgrind_total(path):
    with open(path) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def callgrind_calls(path):
    """Calls made to each function inside the collected range."""
    names = {}
    calls = {}
    current = None
    with open(path) as f:
        for line in f:
            m = re.match(r"^c?fn=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
            if m:
                if m.group(2) is not None:
                    names[m.group(1)] = m.group(2)
                if line.startswith("cfn="):
                    current = names.get(m.group(1), m.group(1))
                continue
            if line.startswith("calls=") and current is not None:
                calls[current] = calls.get(current, 0) + int(line.split("=", 1)[1].split()[0])
    return calls


def self_costs(path):
    """Self Ir of every function: {(function, object): Ir}."""
    r = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", "--auto=no", path],
                       capture_output=True, text=True)
    costs = {}
    for line in r.stdout.splitlines():
        m = re.match(r"^\s*([\d,]+) \(\s*[\d.]+%\)\s+(?:[^:\s]*?):(\S.*?)(?: \[(.*)\])?$", line)
        if not m or "PROGRAM TOTALS" in line or "=>" in line:
            continue
        key = (m.group(2).strip(), m.group(3) or "")
        costs[key] = costs.get(key, 0) + int(m.group(1).replace(",", ""))
    return costs


# ---- QEMU ----------------------------------------------------------------------

QEMU_VARIANTS = ("noplugin", "floor", "libportal")


def qemu_run(arch, variant, n):
    if variant == "noplugin":
        spec, extra = f"{arch}/guest-noplugin-bench", []
    elif variant == "floor":
        spec, extra = f"{arch}/guest-bench", ["-plugin", FLOOR, "-d", "plugin"]
    else:
        spec, extra = f"{arch}/guest-bench", ["-plugin", f"{LIB},load={DEMO},module_arg=tour,log=error"]
    env = dict(os.environ, BUILD_DIR=guest_dir(n), TIMEOUT="300")
    started = time.perf_counter()
    result = subprocess.run([os.path.join(ROOT, "Tests", "guests", "run.sh"), spec, *extra], cwd=ROOT, env=env,
                            capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    what = f"qemu {arch} {variant} N={n}"
    if result.returncode != 0:
        errors.append(f"{what}: run.sh exited {result.returncode}: {result.stderr.strip()[-800:]}")
        return None
    if variant == "floor" and f"floor: {n} BENCH round trips" not in result.stderr:
        errors.append(f"{what}: the floor did not report {n} round trips: {result.stderr.strip()[-400:]}")
        return None
    if variant == "libportal":
        if (f"portal: tour: served {n} READ round trips" not in result.stderr
                or "portal: tour: PASS" not in result.stderr or "portal: error" in result.stderr):
            errors.append(f"{what}: the tour did not report {n} round trips and PASS: {result.stderr.strip()[-400:]}")
            return None
    return elapsed


def qemu(args):
    small, big = args.qemu_small, args.qemu_big
    times = {(a, v, n): [] for a in args.arches for v in QEMU_VARIANTS for n in (small, big)}
    started = time.monotonic()
    for rep in range(args.qemu_reps):
        # Interleaved, so a noisy moment hits every variant alike.
        for arch in args.arches:
            for variant in QEMU_VARIANTS:
                for n in (small, big):
                    t = qemu_run(arch, variant, n)
                    if t is not None:
                        times[(arch, variant, n)].append(t)
        log(f"qemu: round {rep + 1}/{args.qemu_reps} done ({time.monotonic() - started:.0f} s)")
    out = {}
    for arch in args.arches:
        out[arch] = {}
        for variant in QEMU_VARIANTS:
            t_small, t_big = times[(arch, variant, small)], times[(arch, variant, big)]
            if not t_small or not t_big:
                continue
            base = statistics.median(t_small)
            ns = [(t - base) * 1e9 / (big - small) for t in t_big]
            out[arch][variant] = {"ns_per_round_trip": stats(ns),
                                  "round_trips_per_s": stats([1e9 / x for x in ns if x > 0] or [0]),
                                  "wall_s_small": stats(t_small), "wall_s_big": stats(t_big)}
        lp, fl = out[arch].get("libportal"), out[arch].get("floor")
        if lp and fl:
            pairs = zip(lp["ns_per_round_trip"]["samples"], fl["ns_per_round_trip"]["samples"])
            out[arch]["ratio_libportal_to_floor"] = stats([a / b for a, b in pairs if b > 0])
    return out


# ---- QEMU: reads from a Swift handler, direct memory first vs the portal ----------

READ_BENCH_LINE = re.compile(r"portal: tour: read bench: (\d+) 8-byte reads at ([\d.]+) ns each, "
                             r"(\d+) 4 KiB reads at ([\d.]+) ns each")


def qemu_read_run(arch, direct, n):
    """One guest-read-bench boot: (ns per 8-byte read, ns per 4 KiB read) as the tour timed them."""
    plugin = f"{LIB},load={DEMO},module_arg=tour,log=error,direct_memory={direct}"
    env = dict(os.environ, BUILD_DIR=guest_dir(n), TIMEOUT="600")
    result = subprocess.run([os.path.join(ROOT, "Tests", "guests", "run.sh"), f"{arch}/guest-read-bench",
                             "-plugin", plugin], cwd=ROOT, env=env, capture_output=True, text=True)
    what = f"qemu {arch} read bench direct_memory={direct} N={n}"
    match = READ_BENCH_LINE.search(result.stderr)
    if result.returncode != 0 or not match or "portal: tour: PASS" not in result.stderr:
        errors.append(f"{what}: run.sh exited {result.returncode} without a read bench line and PASS: "
                      f"{result.stderr.strip()[-400:]}")
        return None
    if int(match.group(1)) != n:
        errors.append(f"{what}: the tour made {match.group(1)} 8-byte reads, expected {n}")
        return None
    return float(match.group(2)), float(match.group(4))


def qemu_reads(args):
    """guest-read-bench (READ_BENCH in contract.h): the tour's handler times N 8-byte reads and N/64 4 KiB
    reads through Guest.read / Guest.readBytes, with direct memory (QEMU's own view) and with
    direct_memory=off (portal READs: one round trip per 8 bytes, two per 4 KiB)."""
    n = args.qemu_big
    samples = {(a, d): [] for a in args.arches for d in ("on", "off")}
    started = time.monotonic()
    for rep in range(args.qemu_reps):
        for arch in args.arches:
            for direct in ("on", "off"):
                r = qemu_read_run(arch, direct, n)
                if r is not None:
                    samples[(arch, direct)].append(r)
        log(f"qemu reads: round {rep + 1}/{args.qemu_reps} done ({time.monotonic() - started:.0f} s)")
    out = {}
    for arch in args.arches:
        on, off = samples[(arch, "on")], samples[(arch, "off")]
        if not on or not off:
            continue
        res = {}
        for index, size in ((0, "8"), (1, "4096")):
            direct_ns = [x[index] for x in on]
            portal_ns = [x[index] for x in off]
            res[size] = {"direct_ns": stats(direct_ns), "portal_ns": stats(portal_ns),
                         "speedup": stats([p / d for p, d in zip(portal_ns, direct_ns) if d > 0])}
        out[arch] = res
    return out


LINUX_VARIANTS = ("noplugin", "floor", "libportal")


def linux_boot(variant):
    """(seconds from QEMU's start to the guest's "view: end" line, CPU
    seconds of the whole run), or None."""
    extra = {"noplugin": [], "floor": ["-plugin", FLOOR],
             "libportal": ["-plugin", f"{LIB},log=error"]}[variant]
    # PORTAL_WAIT=1: once its view is out the guest waits one second for a
    # host that never comes, and powers off.
    env = dict(os.environ, LINUX_ARCH="amd64", PORTAL_WAIT="1", TIMEOUT="300")
    started = time.perf_counter()
    process = subprocess.Popen([os.path.join(ROOT, "Tests", "guests", "linux", "run.sh"), *extra], cwd=ROOT,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace")
    reached = None
    lines = []
    for line in process.stdout:
        lines.append(line.rstrip("\r\n"))
        if reached is None and line.startswith("view: end"):
            reached = time.perf_counter() - started
    stderr = process.stderr.read()
    # wait4: the run's CPU time, QEMU's included (every descendant was reaped).
    _, wait_status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(wait_status)
    cpu = usage.ru_utime + usage.ru_stime
    what = f"linux boot, {variant}"
    if reached is None or "guest: module loaded" not in lines:
        errors.append(f"{what}: the guest never printed its view with the module loaded (run.sh exited "
                      f"{process.returncode}): {' | '.join(lines[-3:])} {stderr.strip()[-300:]}")
        return None
    if "portal: error" in stderr:
        errors.append(f"{what}: the plugin logged an error: {stderr.strip()[-300:]}")
        return None
    return reached, cpu


def linux(args):
    if not os.path.exists(os.path.join(ROOT, ".cache", "linux", "initramfs.cpio")):
        errors.append("linux: no .cache/linux/initramfs.cpio (run scripts/fetch-linux.sh or make linux)")
        return {}
    times = {v: [] for v in LINUX_VARIANTS}
    cpu = {v: [] for v in LINUX_VARIANTS}
    started = time.monotonic()
    for rep in range(args.linux_reps):
        for variant in LINUX_VARIANTS:      # interleaved, as the QEMU loops
            result = linux_boot(variant)
            if result is not None:
                times[variant].append(result[0])
                cpu[variant].append(result[1])
        log(f"linux: round {rep + 1}/{args.linux_reps} done ({time.monotonic() - started:.0f} s)")
    out = {v: {"boot_s": stats(times[v]), "cpu_s": stats(cpu[v])} for v in LINUX_VARIANTS if times[v]}
    # Ratios of medians: the runs are interleaved, so a noisy moment hits every variant alike.
    for measure in ("boot_s", "cpu_s"):
        for variant, base in (("floor", "noplugin"), ("libportal", "noplugin"), ("libportal", "floor")):
            if variant in out and base in out:
                out[f"ratio_{variant}_to_{base}_{measure}"] = round(
                    out[variant][measure]["median"] / out[base][measure]["median"], 3)
    return out


# ---- the table -------------------------------------------------------------------

def status(value, op, target):
    if value is None:
        return "n/a"
    ok = value <= target if op == "<=" else value >= target if op == ">=" else value == target
    return "PASS" if ok else "MISS"


def build_rows(m, cg, q, cgq, lx=None, qr=None):
    """(section, label, stats or value, unit, target text, status) rows."""
    rows = []

    def metric(name):
        obj = m.get(name)
        if obj is None:
            return None
        if "samples" in obj:
            return stats(obj["samples"])
        return {"median": obj["value"], "min": obj["value"], "max": obj["value"], "samples": [obj["value"]]}

    def add(section, label, st, unit, target=None, op=None, tval=None, key=None, note=None):
        stat = status(st["median"] if st else None, op, tval) if op else ""
        rows.append({"section": section, "label": label, "unit": unit, "target": target or "", "status": stat,
                     "key": key, "note": note, **(st or {"median": None, "min": None, "max": None})})

    sec = "Engine round trip (mock emulator, one conversation)"
    add(sec, "mock guest alone (null callback)", metric("rt.null"), "ns", key="rt.null",
        note="the mock guest's own cost: trap call + serving the READ")
    add(sec, "hand-written C host (floor)", metric("rt.floor"), "ns", key="rt.floor",
        note="no engine: hard-coded protocol through panda_virtual_memory_*")
    add(sec, "C step function", metric("rt.c"), "ns", f"<= {TARGET_RT_C_NS:g} ns", "<=", TARGET_RT_C_NS, "rt.c")
    add(sec, "Swift async handler", metric("rt.swift"), "ns", f"<= {TARGET_RT_SWIFT_NS:g} ns", "<=",
        TARGET_RT_SWIFT_NS, "rt.swift")
    add(sec, "  Swift runtime alone (no engine, no guest)", metric("rt.swift_runtime"), "ns",
        key="rt.swift_runtime",
        note="bench/swift-runtime-floor: one continuation resumed and the task's job run inline")
    for kind in ("c", "swift"):
        a, f = metric(f"rt.{kind}"), metric("rt.floor")
        if a and f:
            add(sec, f"  plugin share, {'C' if kind == 'c' else 'Swift'} (minus floor)",
                {"median": a["median"] - f["median"], "min": a["min"] - f["max"], "max": a["max"] - f["min"]},
                "ns", key=f"rt.{kind}.share")

    sec = "Live conversations, driven round-robin"
    for kind, target in (("floor", None), ("c", TARGET_RT_C_NS), ("swift", TARGET_RT_SWIFT_NS)):
        name = {"floor": "floor", "c": "C", "swift": "Swift"}[kind]
        for k in (1, 64, 4096):
            st = metric(f"live.{kind}.{k}")
            if target:
                add(sec, f"{name}, {k} live", st, "ns", f"<= {target:g} ns", "<=", target, f"live.{kind}.{k}")
            else:
                add(sec, f"{name}, {k} live", st, "ns", key=f"live.{kind}.{k}")
        one, many = metric(f"live.{kind}.1"), metric(f"live.{kind}.4096")
        if one and many and target:
            ratio = many["median"] / one["median"]
            add(sec, f"{name}: 4096 live / 1 live", {"median": ratio, "min": many["min"] / one["max"],
                                                      "max": many["max"] / one["min"]},
                "x", f"<= {TARGET_FLAT_RATIO:g}x (flat)", "<=", TARGET_FLAT_RATIO, f"live.{kind}.flat")

    sec = "2 vCPU threads at once (one conversation each)"
    for kind in ("floor", "c", "swift"):
        name = {"floor": "floor", "c": "C", "swift": "Swift"}[kind]
        add(sec, f"{name}: per thread", metric(f"threads2.{kind}.per_thread"), "ns",
            key=f"threads2.{kind}.per_thread", note="each thread's own ns per round trip")
        add(sec, f"{name}: aggregate", metric(f"threads2.{kind}.aggregate"), "ns",
            key=f"threads2.{kind}.aggregate", note="wall time / all round trips")

    sec = "Bulk transfer, 1 MiB through the region (MB = 10^6 B)"
    add(sec, "Swift BULK_READ", metric("bulk.swift_read"), "MB/s", f">= {TARGET_BULK_MBS:g} MB/s", ">=",
        TARGET_BULK_MBS, "bulk.swift_read")
    add(sec, "Swift BULK_WRITE", metric("bulk.swift_write"), "MB/s", key="bulk.swift_write")
    add(sec, "C step bulk read", metric("bulk.c_read"), "MB/s", f">= {TARGET_BULK_MBS:g} MB/s", ">=",
        TARGET_BULK_MBS, "bulk.c_read")
    add(sec, "floor bulk read", metric("bulk.floor_read"), "MB/s", key="bulk.floor_read")

    sec = "Heap allocations (counted by interposed malloc)"
    add(sec, "C, per round trip (steady state)", metric("alloc.c.per_round_trip"), "allocs", "== 0", "==",
        TARGET_ALLOC_C, "alloc.c.per_round_trip")
    add(sec, "Swift, per round trip (steady state)", metric("alloc.swift.per_round_trip"), "allocs", "<= 1", "<=",
        TARGET_ALLOC_SWIFT, "alloc.swift.per_round_trip")
    add(sec, "C, per round trip, 64 live", metric("alloc.c.live64.per_round_trip"), "allocs", "== 0", "==",
        TARGET_ALLOC_C, "alloc.c.live64.per_round_trip")
    add(sec, "Swift, per round trip, 64 live", metric("alloc.swift.live64.per_round_trip"), "allocs", "<= 1", "<=",
        TARGET_ALLOC_SWIFT, "alloc.swift.live64.per_round_trip")
    add(sec, "C, per whole conversation (1 READ)", metric("alloc.c.per_conversation"), "allocs",
        key="alloc.c.per_conversation")
    add(sec, "Swift, per whole conversation (3 READs)", metric("alloc.swift.per_conversation"), "allocs",
        key="alloc.swift.per_conversation")

    if cg:
        sec = "Instructions per round trip (callgrind Ir, exact)"
        for kind, name in (("null", "mock guest alone"), ("floor", "hand-written C host (floor)"),
                           ("c", "C step function"), ("swift", "Swift async handler"),
                           ("swift_runtime", "  Swift runtime alone (no engine, no guest)")):
            if kind in cg:
                v = cg[kind]["ir_per_round_trip"]
                if kind == "swift":
                    add(sec, name, {"median": v, "min": v, "max": v}, "Ir", f"<= {TARGET_IR_SWIFT:,.0f} Ir", "<=",
                        TARGET_IR_SWIFT, key=f"callgrind.{kind}")
                else:
                    add(sec, name, {"median": v, "min": v, "max": v}, "Ir", key=f"callgrind.{kind}")

    if cgq:
        sec = "Instructions per guest round trip in QEMU (callgrind Ir, vCPU thread; i386 with -icount)"
        for arch, res in cgq.items():
            for variant, name in (("noplugin", "no plugin (emulator alone)"), ("floor", "floor plugin"),
                                  ("libportal", "libportal.so (the demo module's tour)")):
                if variant in res:
                    v = res[variant]["ir_per_round_trip"]
                    add(sec, f"{arch}: {name}", {"median": v, "min": v, "max": v}, "Ir",
                        key=f"callgrind.qemu.{arch}.{variant}")
            if "ratio_libportal_to_floor" in res:
                v = res["ratio_libportal_to_floor"]
                add(sec, f"{arch}: libportal.so / floor, in Ir", {"median": v, "min": v, "max": v}, "x",
                    f"<= {TARGET_QEMU_RATIO:g}x", "<=", TARGET_QEMU_RATIO, f"callgrind.qemu.{arch}.ratio")

    if q:
        sec = "Real QEMU 11.1: round trips seen by the guest loop"
        for arch, res in q.items():
            for variant, name in (("noplugin", "no plugin (emulator alone)"), ("floor", "floor plugin"),
                                  ("libportal", "libportal.so (the demo module's tour)")):
                if variant in res:
                    add(sec, f"{arch}: {name}", res[variant]["round_trips_per_s"], "rt/s",
                        key=f"qemu.{arch}.{variant}.rt_per_s")
                    add(sec, f"{arch}: {name}", res[variant]["ns_per_round_trip"], "ns",
                        key=f"qemu.{arch}.{variant}.ns")
            if "ratio_libportal_to_floor" in res:
                add(sec, f"{arch}: libportal.so / floor, in time", res["ratio_libportal_to_floor"], "x",
                    f"<= {TARGET_QEMU_RATIO:g}x", "<=", TARGET_QEMU_RATIO, f"qemu.{arch}.ratio")

    if qr:
        sec = "Real QEMU 11.1: reads from a Swift handler (Guest.read / readBytes), direct memory vs portal"
        for arch, res in qr.items():
            for size, name in (("8", "8-byte read"), ("4096", "4 KiB read")):
                add(sec, f"{arch}: {name}, direct memory", res[size]["direct_ns"], "ns",
                    key=f"qemu_reads.{arch}.{size}.direct")
                add(sec, f"{arch}: {name}, portal (direct_memory=off)", res[size]["portal_ns"], "ns",
                    key=f"qemu_reads.{arch}.{size}.portal")
                add(sec, f"{arch}: {name}, portal / direct", res[size]["speedup"], "x",
                    f">= {TARGET_DIRECT_SPEEDUP:g}x", ">=", TARGET_DIRECT_SPEEDUP, f"qemu_reads.{arch}.{size}.speedup")
    if lx:
        sec = "Linux guest boot to its view (x86_64, Debian 6.1, 2 vCPUs, TCG)"
        for measure, what in (("boot_s", "wall time to the view"), ("cpu_s", "CPU time of the run")):
            for variant, name in (("noplugin", "no plugin"), ("floor", "floor plugin"),
                                  ("libportal", "libportal.so (no work)")):
                if variant in lx:
                    add(sec, f"{what}: {name}", lx[variant][measure], "s", key=f"linux.{variant}.{measure}")
            for variant, base, name in (("floor", "noplugin", "floor / no plugin"),
                                        ("libportal", "noplugin", "libportal.so / no plugin"),
                                        ("libportal", "floor", "libportal.so / floor")):
                key = f"ratio_{variant}_to_{base}_{measure}"
                if key in lx:
                    v = lx[key]
                    add(sec, f"{what}: {name}", {"median": v, "min": v, "max": v}, "x", key=f"linux.{key}")
    return rows


def fmt(v, unit):
    if v is None:
        return "-"
    if unit == "allocs":
        return f"{v:.3f}" if v != int(v) else f"{int(v)}"
    if unit == "x":
        return f"{v:.2f}"
    if unit == "rt/s":
        return f"{v / 1e6:.3f}M"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.1f}"


def print_table(rows, out):
    widths = [44, 11, 11, 11, 6, 22, 6]
    head = ["measurement", "median", "min", "max", "unit", "target", "status"]

    def line(cells):
        parts = []
        for i, (c, w) in enumerate(zip(cells, widths)):
            parts.append(c.ljust(w) if i in (0, 4, 5, 6) else c.rjust(w))
        return "  ".join(parts).rstrip()

    section = None
    print(line(head), file=out)
    print("-" * (sum(widths) + 2 * (len(widths) - 1)), file=out)
    for r in rows:
        if r["section"] != section:
            section = r["section"]
            print(f"\n{section}", file=out)
        print(line([" " + r["label"], fmt(r["median"], r["unit"]), fmt(r["min"], r["unit"]),
                    fmt(r["max"], r["unit"]), r["unit"], r["target"], r["status"]]), file=out)


# ---- main -------------------------------------------------------------------------

def machine_info():
    def cmd(c):
        try:
            return subprocess.run(c, cwd=ROOT, capture_output=True, text=True).stdout.strip()
        except OSError:
            return None
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), None)
    except OSError:
        pass
    return {"host": platform.node(), "kernel": platform.release(), "cpu": cpu, "cpus": os.cpu_count(),
            "loadavg_start": os.getloadavg(), "git_commit": cmd(["git", "rev-parse", "HEAD"]),
            "git_dirty": bool(cmd(["git", "status", "--porcelain", "--", "Sources", "include"])),
            "swift": (cmd(["swift", "--version"]) or "").splitlines()[0:1]}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer round trips and runs (a smoke test, noisy)")
    p.add_argument("--reps", type=int, default=None, help="runs per engine figure (default 7)")
    p.add_argument("--no-swift-build", action="store_true", help="do not run swift build -c release (make bench did)")
    p.add_argument("--no-qemu", action="store_true")
    p.add_argument("--no-callgrind", action="store_true")
    p.add_argument("--no-linux", action="store_true", help="skip the Linux guest boots")
    p.add_argument("--only-linux", action="store_true", help="only the Linux guest boots")
    args = p.parse_args()
    args.reps = args.reps or (3 if args.quick else 7)
    args.trips = 200_000 if args.quick else 2_000_000
    args.cg_trips = (2_000, 12_000) if args.quick else (10_000, 60_000)
    args.qemu_small, args.qemu_big = (1_000, 200_000) if args.quick else (1_000, 1_000_000)
    args.qemu_reps = 3 if args.quick else 7
    args.linux_reps = 1 if args.quick else 3
    args.arches = ("i386", "riscv64")
    args.cg_qemu_trips = (1_000, 21_000)
    args.cg_qemu_arches = ("riscv64",) if args.quick else ("i386", "riscv64")
    args.cg_qemu_tries = 1 if args.quick else 2

    started = time.monotonic()
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    os.makedirs(RESULTS, exist_ok=True)
    outdir = os.path.join(RESULTS, stamp)
    os.makedirs(outdir, exist_ok=True)
    info = machine_info()

    try:
        build(args)
    except RuntimeError as e:
        log(f"build failed: {e}")
        return 1
    only_linux = args.only_linux
    metrics = {} if only_linux else engine(args)
    traces = {} if only_linux else alloc_traces(outdir)
    retains = {} if only_linux else retain_traces()
    cg = {} if args.no_callgrind or only_linux else callgrind(args, outdir)
    q = {} if args.no_qemu or only_linux else qemu(args)
    cgq = {} if args.no_callgrind or args.no_qemu or only_linux else callgrind_qemu(args, outdir)
    qr = {} if args.no_qemu or only_linux else qemu_reads(args)
    lx = {} if args.no_linux else linux(args)

    rows = build_rows(metrics, cg, q, cgq, lx, qr)
    if only_linux:
        rows = [row for row in rows if str(row.get("key", "")).startswith("linux.")]
    info["loadavg_end"] = os.getloadavg()
    duration = time.monotonic() - started
    print()
    print(f"portal benchmarks, {stamp} ({'quick' if args.quick else 'full'}; "
          f"{info['cpus']} CPUs, load {info['loadavg_start'][0]:.2f} -> {info['loadavg_end'][0]:.2f}; "
          f"median of {args.reps} runs for the engine, {args.qemu_reps} for QEMU, "
          f"{args.linux_reps} for the Linux boots)")
    print_table(rows, sys.stdout)
    if cg:
        for kind in ("c", "swift"):
            if kind in cg:
                print(f"\ncallgrind, {'C step' if kind == 'c' else 'Swift handler'}: top functions by self "
                      f"cost, Ir per round trip (full list: "
                      f"{os.path.relpath(os.path.join(outdir, f'callgrind-top-{kind}.txt'), ROOT)})")
                for row in cg[kind]["top_self"][:15]:
                    print(f"  {row['ir_per_round_trip']:8.1f}  {row['function'][:110]}  [{row['object']}]")
    for kind, res in retains.items():
        tot = res["totals"]
        print(f"\nreference counting per round trip, {'C step' if kind == 'c' else 'Swift handler'}: "
              f"{tot.get('total_retains_per_round_trip', 0):g} swift_retain, "
              f"{tot.get('total_releases_per_round_trip', 0):g} swift_release, on:")
        for o in res["objects"]:
            print(f"  {o['type'] or o['metadata_symbol'] or '?'}: {o['retains_per_round_trip']:g} retain(s), "
                  f"{o['releases_per_round_trip']:g} release(s)")
    for arch, res in cgq.items():
        if "libportal" in res:
            print(f"\ncallgrind, QEMU {arch} with libportal.so: top functions by self cost, Ir per round trip "
                  f"(full list: {os.path.relpath(os.path.join(outdir, f'callgrind-top-qemu-{arch}-libportal.txt'), ROOT)})")
            for row in res["libportal"]["top_self"][:15]:
                print(f"  {row['ir_per_round_trip']:8.1f}  {row['function'][:110]}  [{row['object']}]")

    document = {
        "timestamp": stamp, "duration_s": round(duration, 1), "mode": "quick" if args.quick else "full",
        "machine": info, "library": os.path.relpath(LIB, ROOT),
        "config": {"engine_reps": args.reps, "engine_trips": args.trips, "callgrind_trips": list(args.cg_trips),
                   "qemu_round_trips": [args.qemu_small, args.qemu_big], "qemu_reps": args.qemu_reps,
                   "qemu_arches": list(args.arches),
                   "callgrind_qemu_round_trips": list(args.cg_qemu_trips),
                   "callgrind_qemu_arches": list(args.cg_qemu_arches),
                   "callgrind_qemu_tries": args.cg_qemu_tries, "linux_reps": args.linux_reps},
        "targets": {"rt_swift_ns": TARGET_RT_SWIFT_NS, "rt_c_ns": TARGET_RT_C_NS, "ir_swift": TARGET_IR_SWIFT,
                    "flat_ratio_4096_to_1": TARGET_FLAT_RATIO, "alloc_c": TARGET_ALLOC_C,
                    "alloc_swift": TARGET_ALLOC_SWIFT, "qemu_ratio_to_floor": TARGET_QEMU_RATIO,
                    "direct_read_speedup": TARGET_DIRECT_SPEEDUP,
                    "bulk_read_mb_s": TARGET_BULK_MBS},
        "rows": rows, "engine_raw": metrics, "callgrind": cg, "callgrind_qemu": cgq, "qemu": q, "linux": lx, "qemu_reads": qr, "alloc_traces": traces, "retains": retains,
        "artifacts": os.path.relpath(outdir, ROOT), "errors": errors,
    }
    path = os.path.join(RESULTS, f"{stamp}.json")
    with open(path, "w") as f:
        json.dump(document, f, indent=1)
    shutil.copyfile(path, os.path.join(RESULTS, "latest.json"))
    print(f"\nresults: {os.path.relpath(path, ROOT)} (and bench/results/latest.json); "
          f"artifacts in {os.path.relpath(outdir, ROOT)}/; took {duration:.0f} s")
    misses = [r["label"].strip() for r in rows if r["status"] == "MISS"]
    if misses:
        print(f"targets missed: {len(misses)} ({'; '.join(misses)})")
    if errors:
        print("ERRORS:", file=sys.stderr)
        for e in errors:
            print(f"  {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
