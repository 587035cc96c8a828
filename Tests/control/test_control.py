"""The control socket (control=PATH) in real QEMU, with real clients.

    python Tests/control/test_control.py --lib .build/debug/libportal.so [--portalctl PATH]

Boots the x86_64 control guests (Tests/guests/contract.h: guest-control
polls its interrupt flag, guest-control-deaf never does) with the plugin
listening on a socket, and checks with exact expectations what the
unmodified qemu.qmp client, qmp-shell, raw sockets and portalctl get.
Prints one line per test and "N passed, M failed"; exits 1 if any failed.
"""
import argparse
import asyncio
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

from qemu.qmp import EventListener, ExecuteError, QMPClient

sys.dont_write_bytecode = True   # the helper modules beside this file leave no __pycache__

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
GUESTS = os.path.join(ROOT, "Tests", "guests", "build", "x86_64")
CONTRACT_PAGE = 0x101000
STOP_WORD = CONTRACT_PAGE + 24
CONTRACT_BYTES = "1122334455667788" + b"portal-contract\0".hex()
COMMANDS = ["qmp_capabilities", "query-commands", "query-portal", "query-stats", "watch-hypercall", "guest-memory-read",
            "guest-memory-read-string", "guest-memory-write", "guest-get-time", "watch-syscall", "query-processes",
            "query-process", "query-mappings", "query-fds", "query-cwd", "query-argv", "query-environment",
            "query-executable", "query-symbol", "guest-file-open", "guest-file-read", "guest-file-write",
            "guest-file-close", "guest-exec", "guest-exec-status", "guest-info"]

results = {"passed": 0, "failed": 0}


def check(name, ok, detail=""):
    if ok:
        print(f"PASS {name}")
        results["passed"] += 1
    else:
        print(f"FAIL {name}: {detail}")
        results["failed"] += 1


def expect_equal(name, got, want):
    check(name, got == want, f"got {got!r}, want {want!r}")


class Guest:
    """One QEMU run of a control guest with the plugin on a socket."""

    def __init__(self, lib, binary, work, plugin_args="log=warn"):
        self.socket_path = os.path.join(work, f"{binary}.sock")
        self.serial = os.path.join(work, f"{binary}.serial")
        self.log = os.path.join(work, f"{binary}.log")
        self.process = subprocess.Popen(
            [os.path.join(ROOT, "scripts", "qemu"), "qemu-system-x86_64", "-M", "pc", "-cpu", "qemu64",
             "-m", "64M", "-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-display", "none",
             "-monitor", "none", "-no-reboot", "-serial", f"file:{self.serial}",
             "-kernel", os.path.join(GUESTS, f"{binary}.elf"),
             # direct_memory=off: the control guests' module treats every
             # address outside its image as unmapped (contract.h) while
             # QEMU's own view of memory reads the RAM there; these tests
             # check requests the guest answers (READ_FAIL at 0x10, the
             # trace's READ round trips), so every read is a portal READ.
             "-plugin", f"{lib},control={self.socket_path},direct_memory=off,{plugin_args}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(self.log, "w"))
        deadline = time.time() + 30
        while not os.path.exists(self.socket_path):
            if self.process.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"QEMU did not open {self.socket_path}: {self.log_text()}")
            time.sleep(0.05)
        # The boot sequence ends with an interrupt conversation of its own:
        # requests are sent once the guest is in its control loop.
        while "control: " not in self.serial_text():
            if self.process.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"the guest did not reach its control loop: {self.serial_text()!r}")
            time.sleep(0.05)

    def log_text(self):
        with open(self.log) as f:
            return f.read()

    def serial_text(self):
        with open(self.serial) as f:
            return f.read()

    def wait(self, timeout=30):
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return None

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.wait()


class RawClient:
    """A client that writes exact bytes and reads one line per message."""

    def __init__(self, path, negotiate=True):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.sock.settimeout(20)
        self.buffer = b""
        self.greeting = self.read()
        if negotiate:
            assert self.command({"execute": "qmp_capabilities"}) == {"return": {}}

    def read(self):
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("the server closed the connection")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def send(self, data):
        self.sock.sendall(data)

    def command(self, message):
        self.send(json.dumps(message).encode())
        return self.read()

    def close(self):
        self.sock.close()


async def qmp_client_tests(path):
    qmp = QMPClient("portal-test")
    await qmp.connect(path)
    expect_equal("qemu.qmp-greeting", dict(qmp.greeting.QMP.version),
                 {"qemu": {"micro": 0, "minor": 1, "major": 0}, "package": "portal 0.1.0"})
    names = [c["name"] for c in await qmp.execute("query-commands")]
    expect_equal("qemu.qmp-query-commands", names, COMMANDS)
    portal = await qmp.execute("query-portal")
    ops = portal.pop("ops")
    expect_equal("qemu.qmp-query-portal", portal, {
        "version": "0.1.0", "emulator": "qemu", "arch": "x86_64", "word-bits": 64, "byte-order": "little",
        "region-size": 4072, "op-max": 56, "vcpus": 1, "live-conversations": 0, "pending-interrupts": [],
        "waiting-requests": 0})
    expect_equal("qemu.qmp-query-portal-ops", (len(ops), ops[0], ops[16], ops[-1]),
                 (55, {"name": "READ", "number": 1}, {"name": "READ_TIME", "number": 17},
                  {"name": "VFS_CLOSE", "number": 55}))
    expect_equal("qemu.qmp-memory-read",
                 await qmp.execute("guest-memory-read", {"address": CONTRACT_PAGE, "size": 24}),
                 {"address": CONTRACT_PAGE, "size": 24, "hex": CONTRACT_BYTES})
    expect_equal("qemu.qmp-memory-read-string",
                 await qmp.execute("guest-memory-read-string", {"address": CONTRACT_PAGE + 8}),
                 {"address": CONTRACT_PAGE + 8, "length": 15, "string": "portal-contract",
                  "hex": b"portal-contract".hex()})
    first = await qmp.execute("guest-get-time")
    second = await qmp.execute("guest-get-time")
    check("qemu.qmp-guest-get-time", isinstance(first, int) and 0 < first < second, f"{first}, {second}")
    try:
        await qmp.execute("guest-memory-read", {"address": 0x10, "size": 24})
        check("qemu.qmp-read-fault", False, "no error")
    except ExecuteError as error:
        expect_equal("qemu.qmp-read-fault", (error.error_class, error.error.error.desc),
                     ("GenericError", "guest-memory-read: reading 24 bytes at 0x10 stopped after 0 bytes (READ_FAIL)"))
    for arguments, desc in [
        ({"address": CONTRACT_PAGE}, "Parameter 'size' is missing"),
        ({"address": "x", "size": 1}, "Invalid parameter type for 'address', expected: uint64"),
        ({"address": 0, "size": 0}, "Parameter 'size' expects a value from 1 to 262144"),
        ({"address": 0, "size": 1, "colour": 1}, "Parameter 'colour' is unexpected"),
        ({"address": 0, "size": 1, "timeout": 0}, "Parameter 'timeout' expects a number of seconds above 0 and at most 86400"),
    ]:
        try:
            await qmp.execute("guest-memory-read", arguments)
            check(f"qemu.qmp-arguments {arguments}", False, "no error")
        except ExecuteError as error:
            expect_equal(f"qemu.qmp-arguments {desc}", (error.error_class, error.error.error.desc), ("GenericError", desc))
    try:
        await qmp.execute("query-processes-of-mars")
        check("qemu.qmp-command-not-found", False, "no error")
    except ExecuteError as error:
        expect_equal("qemu.qmp-command-not-found", (error.error_class, error.error.error.desc),
                     ("CommandNotFound", "The command query-processes-of-mars has not been found"))
    await qmp.disconnect()


async def two_clients(path):
    """Two clients with requests in flight at once, each answered on its own connection."""
    first, second = QMPClient("first"), QMPClient("second")
    await first.connect(path)
    await second.connect(path)
    replies = await asyncio.gather(
        first.execute("guest-memory-read", {"address": CONTRACT_PAGE, "size": 8}),
        second.execute("guest-memory-read-string", {"address": CONTRACT_PAGE + 8, "max-length": 6}),
        first.execute("guest-memory-read", {"address": CONTRACT_PAGE + 8, "size": 4}),
    )
    expect_equal("two-clients", replies, [
        {"address": CONTRACT_PAGE, "size": 8, "hex": "1122334455667788"},
        {"address": CONTRACT_PAGE + 8, "length": 6, "string": "portal", "hex": b"portal".hex()},
        {"address": CONTRACT_PAGE + 8, "size": 4, "hex": b"port".hex()},
    ])
    await first.disconnect()
    await second.disconnect()


def raw_tests(path):
    client = RawClient(path, negotiate=False)
    expect_equal("raw-before-negotiation", client.command({"execute": "query-portal", "id": 7}),
                 {"error": {"class": "CommandNotFound",
                            "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}, "id": 7})
    expect_equal("raw-negotiation", client.command({"execute": "qmp_capabilities"}), {"return": {}})
    expect_equal("raw-negotiation-twice", client.command({"execute": "qmp_capabilities", "id": "x"}),
                 {"error": {"class": "CommandNotFound",
                            "desc": "Capabilities negotiation is already complete, command ignored"}, "id": "x"})
    # Malformed requests: an error each, and the connection goes on.
    client.send(b'{"execute": }')
    expect_equal("raw-malformed", client.read(),
                 {"error": {"class": "GenericError", "desc": "JSON parse error at byte 12: expected a value"}})
    client.send(b'nonsense ')
    expect_equal("raw-not-json", client.read(),
                 {"error": {"class": "GenericError", "desc": "JSON parse error at byte 0: expected 'null'"}})
    client.send(b'[1, 2]')
    expect_equal("raw-not-an-object", client.read(),
                 {"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}})
    expect_equal("raw-no-execute", client.command({"id": 3}),
                 {"error": {"class": "GenericError", "desc": "QMP input lacks member 'execute'"}, "id": 3})
    expect_equal("raw-extra-member", client.command({"execute": "query-portal", "colour": 1}),
                 {"error": {"class": "GenericError", "desc": "QMP input member 'colour' is unexpected"}})
    prefix = b'{"execute": "guest-memory-read", "arguments": {"address": 1052672, "size": 2}, "id": "'
    client.send(prefix + b'\xff"}')
    expect_equal("raw-bad-utf8", client.read(), {"error": {"class": "GenericError", "desc":
                 f"JSON parse error at byte {len(prefix)}: invalid UTF-8 in a string"}})
    # Oversized: a 2 MiB request is refused whole, then the connection goes on.
    padding = "x" * (2 << 20)
    request = json.dumps({"execute": "query-portal", "arguments": {"padding": padding}}).encode()
    client.send(request)
    expect_equal("raw-oversized", client.read(),
                 {"error": {"class": "GenericError",
                            "desc": f"request of {len(request)} bytes refused: a request may have at most 1048576 bytes"}})
    expect_equal("raw-usable-after-errors",
                 client.command({"execute": "guest-memory-read", "arguments": {"address": CONTRACT_PAGE, "size": 2}, "id": 9}),
                 {"return": {"address": CONTRACT_PAGE, "size": 2, "hex": "1122"}, "id": 9})
    client.close()

    # A client that leaves mid-request costs nothing else.
    leaving = RawClient(path)
    leaving.send(json.dumps({"execute": "guest-memory-read", "arguments": {"address": CONTRACT_PAGE, "size": 8}}).encode())
    leaving.close()
    staying = RawClient(path)
    expect_equal("disconnect-mid-request",
                 staying.command({"execute": "guest-memory-read-string", "arguments": {"address": CONTRACT_PAGE + 8}, "id": 1}),
                 {"return": {"address": CONTRACT_PAGE + 8, "length": 15, "string": "portal-contract",
                             "hex": b"portal-contract".hex()}, "id": 1})
    staying.close()


def qmp_shell_test(python, path):
    shell = os.path.join(os.path.dirname(python), "qmp-shell")
    run = subprocess.run([shell, path], input="guest-memory-read address=1052680 size=15\n",
                         capture_output=True, text=True, timeout=60)
    want = '(QEMU) {"return": {"address": 1052680, "size": 15, "hex": "706f7274616c2d636f6e7472616374"}}'
    check("qmp-shell", run.returncode == 0 and want in run.stdout.splitlines(),
          f"status {run.returncode}, stdout {run.stdout!r}, stderr {run.stderr!r}")


async def event_tests(path, portalctl):
    """watch-hypercall: each interrupt conversation announced as a PORTAL_HYPERCALL event."""
    qmp = QMPClient("events")
    await qmp.connect(path)
    listener = EventListener()
    with qmp.listen(listener):
        expect_equal("watch-hypercall", await qmp.execute("watch-hypercall", {"hypercall": 0x7902}),
                     {"watching": [0x7902]})
        watcher = None
        if portalctl:
            watcher = subprocess.Popen([portalctl, "watch", "PORTAL_HYPERCALL", "--count", "1", "--json",
                                        "--socket", path], stdout=subprocess.PIPE, text=True)
            expect_equal("portalctl-watch-ready", watcher.stdout.readline(), "watching PORTAL_HYPERCALL events\n")
        await qmp.execute("guest-memory-read", {"address": CONTRACT_PAGE, "size": 1})
        event = await asyncio.wait_for(listener.get(), 20)
        data = dict(event["data"])
        check("qemu.qmp-event", event["event"] == "PORTAL_HYPERCALL" and data.pop("region") > 0
              and data == {"hypercall": 0x7902, "vcpu": 0}
              and sorted(event["timestamp"]) == ["microseconds", "seconds"]
              and abs(event["timestamp"]["seconds"] - time.time()) < 60, event)
        if watcher:
            line = json.loads(watcher.stdout.readline())
            expect_equal("portalctl-watch", (line["event"], line["data"]["hypercall"], watcher.wait(20)),
                         ("PORTAL_HYPERCALL", 0x7902, 0))
        expect_equal("watch-hypercall-off", await qmp.execute("watch-hypercall", {"hypercall": 0x7902, "enable": False}),
                     {"watching": []})
    await qmp.disconnect()


def trace_tests(path, trace_path):
    """The trace's lines, exactly (times and latencies aside), and query-stats agreeing with them."""
    # The last reply went out inside its interrupt conversation, which ends
    # at the guest's next trap, microseconds later: let it.
    time.sleep(0.5)
    with open(trace_path) as f:
        lines = [json.loads(line) for line in f]
    for line in lines:
        line.pop("time")
        line.pop("ns", None)
        line.pop("region")
    # The first guest request (qemu.qmp-memory-read) starts an interrupt
    # conversation (later requests may join it while it lasts).
    expect_equal("trace-first-request", lines[:2], [
        {"event": "conversation-start", "vcpu": 0, "hypercall": 0x7902},
        {"event": "round-trip", "vcpu": 0, "hypercall": 0x7902, "op": "READ", "address": CONTRACT_PAGE,
         "size": 24, "response": "READ_OK", "payload": 24},
    ])
    check("trace-conversations-finished", all(line.get("outcome", "finished") == "finished" for line in lines)
          and lines[-1]["event"] == "conversation-end", lines[-1])
    client = RawClient(path)
    stats = client.command({"execute": "query-stats"})["return"]
    client.close()
    trips = [line for line in lines if line["event"] == "round-trip"]
    ops, responses = {}, {}
    for trip in trips:
        ops[trip["op"]] = ops.get(trip["op"], 0) + 1
        responses[trip["response"]] = responses.get(trip["response"], 0) + 1
    latency = stats.pop("latency-ns")
    expect_equal("query-stats-matches-trace", stats, {
        "round-trips": len(trips), "ops": ops, "responses": responses,
        "conversations": {"started": sum(line["event"] == "conversation-start" for line in lines),
                          "ended": sum(line.get("outcome") == "finished" for line in lines),
                          "failed": 0, "reclaimed": 0}})
    check("query-stats-latency", 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"], latency)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--lib", required=True)
    parser.add_argument("--portalctl")
    parser.add_argument("--linux", action="store_true",
                        help="also boot the Linux guest (scripts/fetch-linux.sh) and query it (needs --portalctl)")
    args = parser.parse_args()
    lib = os.path.realpath(args.lib)
    work = tempfile.mkdtemp(prefix="portal-control-")

    trace_path = os.path.join(work, "trace.jsonl")
    guest = Guest(lib, "guest-control", work, f"log=warn,trace={trace_path}")
    mode = stat.S_IMODE(os.stat(guest.socket_path).st_mode)
    check("socket-mode-0600", stat.S_ISSOCK(os.stat(guest.socket_path).st_mode) and mode == 0o600, oct(mode))

    # A second plugin asked to take a live socket refuses to load.
    refused = subprocess.run(
        [os.path.join(ROOT, "scripts", "qemu"), "qemu-system-x86_64", "-M", "pc", "-display", "none",
         "-monitor", "none", "-no-reboot", "-serial", "none", "-kernel", os.path.join(GUESTS, "guest-control.elf"),
         "-plugin", f"{lib},control={guest.socket_path}"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    line = (f"portal: error: qemu_plugin_install: argument 'control={guest.socket_path}': "
            f"'{guest.socket_path}' is a live socket another process is listening on; refusing to take it over")
    check("refuse-live-socket", refused.returncode == 1 and line in refused.stderr.splitlines(),
          f"status {refused.returncode}, stderr {refused.stderr!r}")

    asyncio.run(qmp_client_tests(guest.socket_path))
    asyncio.run(two_clients(guest.socket_path))
    raw_tests(guest.socket_path)
    qmp_shell_test(sys.executable, guest.socket_path)
    if args.portalctl:
        import portalctl_tests  # beside this file
        portalctl_tests.run(args.portalctl, guest.socket_path, check, expect_equal)
        import mcp_tests  # beside this file
        mcp_tests.run(args.portalctl, guest.socket_path, check, expect_equal)

    asyncio.run(event_tests(guest.socket_path, args.portalctl))
    trace_tests(guest.socket_path, trace_path)

    # Writing the stop word ends the guest; the socket goes with the plugin.
    stopper = RawClient(guest.socket_path)
    expect_equal("stop-word-write",
                 stopper.command({"execute": "guest-memory-write", "arguments": {"address": STOP_WORD, "hex": "2a000000"}}),
                 {"return": {"address": STOP_WORD, "size": 4}})
    stopper.close()
    status = guest.wait()
    expect_equal("guest-control-serial", (status, guest.serial_text()), (1, (
        "portal-test-guest x86_64 v1\ncontrol: polling the interrupt flag\ncontrol: stop word 0x2a\n"
        "check control-no-nested-interrupts: ok\nsummary: 1 checks, 1 passed, 0 failed\nRESULT: PASS\n")))
    expect_equal("guest-control-log", guest.log_text(), "")
    check("socket-removed-at-unload", not os.path.exists(guest.socket_path), "still there")

    # A guest that never looks at its flag: the request times out, exactly.
    deaf = Guest(lib, "guest-control-deaf", work)
    client = RawClient(deaf.socket_path)
    started = time.monotonic()
    reply = client.command({"execute": "guest-memory-read",
                            "arguments": {"address": CONTRACT_PAGE, "size": 8, "timeout": 1}, "id": "late"})
    waited = time.monotonic() - started
    expect_equal("timeout-error", reply, {"error": {"class": "GenericError", "desc":
        "guest-memory-read: the guest has not run its interrupt conversation for 1 seconds (the guest module "
        "looks at the interrupt flag only on syscalls and on its timer); request dropped"}, "id": "late"})
    check("timeout-after-1s", 0.9 <= waited < 10, f"{waited:.2f} s")
    portal = client.command({"execute": "query-portal"})["return"]
    expect_equal("timeout-request-dropped", (portal["pending-interrupts"], portal["waiting-requests"]),
                 (["portal-control"], 0))
    client.close()
    deaf.stop()
    expect_equal("guest-control-deaf-serial", deaf.serial_text(),
                 "portal-test-guest x86_64 v1\ncontrol: not looking at the interrupt flag\n")
    expect_equal("guest-control-deaf-log", [line for line in deaf.log_text().splitlines() if line.startswith("portal: ")],
                 ["portal: warn: interrupts still pending at unload, dropped: portal-control"])
    check("deaf-socket-removed", not os.path.exists(deaf.socket_path), "still there")

    # A file that is not a socket is never replaced.
    plain = os.path.join(work, "plain-file")
    with open(plain, "w") as f:
        f.write("keep me\n")
    refused = subprocess.run(
        [os.path.join(ROOT, "scripts", "qemu"), "qemu-system-x86_64", "-M", "pc", "-display", "none",
         "-monitor", "none", "-no-reboot", "-serial", "none", "-kernel", os.path.join(GUESTS, "guest-control.elf"),
         "-plugin", f"{lib},control={plain}"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    line = (f"portal: error: qemu_plugin_install: argument 'control={plain}': "
            f"'{plain}' exists and is not a socket; refusing to replace it")
    check("refuse-plain-file", refused.returncode == 1 and line in refused.stderr.splitlines()
          and open(plain).read() == "keep me\n", f"status {refused.returncode}, stderr {refused.stderr!r}")

    if args.linux and args.portalctl:
        import linux_tests  # beside this file
        linux_tests.run(lib, args.portalctl, sys.executable, work, check, expect_equal)

    print(f"{results['passed']} passed, {results['failed']} failed")
    sys.exit(1 if results["failed"] else 0)


if __name__ == "__main__":
    main()
