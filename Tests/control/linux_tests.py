"""The control socket against the real Linux guest (Tests/guests/linux), called by test_control.py.

One boot (2 vCPUs): the plugin listens on a socket while the guest waits for
/tmp/portal-done; qemu.qmp, qmp-shell, portalctl and the MCP client ask it
about its processes, mappings, files and programs, and every answer is
compared with what the guest printed about itself ("view: ..." lines).
Writing /tmp/portal-done through the socket (portalctl push) ends the run.
"""
import asyncio
import json
import os
import subprocess
import time

from qemu.qmp import QMPClient

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


class LinuxGuest:
    """Tests/guests/linux/run.sh with the plugin on a control socket."""

    def __init__(self, lib, work):
        self.socket_path = os.path.join(work, "linux.sock")
        self.console_path = os.path.join(work, "linux.console")
        self.log_path = os.path.join(work, "linux.log")
        environment = dict(os.environ, PORTAL_WAIT="150", TIMEOUT="240")
        self.process = subprocess.Popen(
            [os.path.join(ROOT, "Tests", "guests", "linux", "run.sh"),
             "-plugin", f"{lib},log=warn,log_file={self.log_path},control={self.socket_path}"],
            stdin=subprocess.DEVNULL, stdout=open(self.console_path, "w"), stderr=subprocess.STDOUT, env=environment)

    def console(self):
        with open(self.console_path, errors="replace") as f:
            return f.read().replace("\r", "")

    def wait_for_view(self, timeout=150):
        """Waits until the guest printed its whole view; returns True if it did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            if "view: end" in self.console():
                return True
            time.sleep(0.5)
        return False

    def view(self, key):
        prefix = f"view: {key} "
        return [line[len(prefix):] for line in self.console().splitlines() if line.startswith(prefix)]

    def wait(self, timeout=120):
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


async def qmp_queries(path, guest, check, expect_equal):
    qmp = QMPClient("linux")
    await qmp.connect(path)
    processes = await qmp.execute("query-processes")
    got = sorted(f"{p['pid']} {p['ppid']} {p['uid']} {p['name']}" for p in processes)
    want = sorted(guest.view("ps"))
    expect_equal("linux-qemu.qmp-query-processes = the guest's ps", got, want)
    check("linux-query-processes-count", len(processes) > 72, f"{len(processes)} processes")
    mapper = int(guest.view("mapper")[0])
    # READ_PROCARGS for another task: the guest joins the arguments with spaces.
    expect_equal("linux-qemu.qmp-query-argv", await qmp.execute("query-argv", {"pid": mapper}),
                 guest.view("mapper-cmdline")[0].rstrip("|").replace("|", " ").split(" "))
    expect_equal("linux-qemu.qmp-query-executable", await qmp.execute("query-executable", {"pid": mapper}),
                 {"path": guest.view("mapper-exe")[0]})
    daemon = int(guest.view("daemon")[0])
    expect_equal("linux-qemu.qmp-query-cwd", await qmp.execute("query-cwd", {"pid": daemon}),
                 {"path": guest.view("daemon-cwd")[0]})
    fds = await qmp.execute("query-fds", {"pid": daemon})
    expect_equal("linux-qemu.qmp-query-fds", [f"{fd['fd']} {fd['path']}" for fd in fds], guest.view("fd"))
    environment = await qmp.execute("query-environment", {"pid": mapper})
    expect_equal("linux-qemu.qmp-query-environment", [f"{e['name']}={e['value']}" for e in environment],
                 guest.view("environ"))
    do_exit = int(guest.view("do_exit")[0], 16)
    expect_equal("linux-qemu.qmp-query-symbol", await qmp.execute("query-symbol", {"name": "do_exit"}),
                 {"name": "do_exit", "address": do_exit})
    first = guest.view("maps")[0].split()
    start, end = (int(x, 16) for x in first[0].split("-"))
    found = await qmp.execute("query-mappings", {"pid": mapper, "address": start + 1})
    expect_equal("linux-qemu.qmp-query-mappings-address", (found["start"], found["end"], found["name"]),
                 (start, end, first[-1]))
    for command, arguments, desc in [
        ("query-fds", {"pid": 999999}, "query-fds: READ_FDS for pid 999999: "),
        ("query-process", {"pid": -1}, "Parameter 'pid' expects a value from 0 to 2147483647"),
        ("guest-file-open", {"path": "etc/passwd"}, "guest-file-open: path 'etc/passwd' is not absolute"),
        ("guest-exec-status", {"pid": 424242}, "guest-exec-status: no guest-exec has pid 424242 (each status is returned once)"),
    ]:
        try:
            await qmp.execute(command, arguments)
            check(f"linux-error {command}", False, "no error")
        except Exception as error:  # qemu.qmp's ExecuteError
            text = error.error.error.desc
            check(f"linux-error {command} {arguments}", text.startswith(desc), text)
    # guest-file-* in the guest agent's shapes.
    handle = await qmp.execute("guest-file-open", {"path": "/etc/passwd"})
    read = await qmp.execute("guest-file-read", {"handle": handle, "count": 5})
    expect_equal("linux-guest-file-read", read, {"count": 5, "buf-b64": "cm9vdDo=", "eof": False})
    expect_equal("linux-guest-file-close", await qmp.execute("guest-file-close", {"handle": handle}), {})
    handle = await qmp.execute("guest-file-open", {"path": "/tmp/qga-file", "mode": "w"})
    expect_equal("linux-guest-file-write", await qmp.execute("guest-file-write", {"handle": handle, "buf-b64": "aGVsbG8K"}),
                 {"count": 6, "eof": False})
    await qmp.execute("guest-file-close", {"handle": handle})
    started = await qmp.execute("guest-exec", {"path": "/bin/cat", "arg": ["/tmp/qga-file"], "capture-output": True})
    expect_equal("linux-guest-exec-status", await qmp.execute("guest-exec-status", {"pid": started["pid"]}),
                 {"exited": True, "exitcode": 0, "out-data": "aGVsbG8K"})
    # Two writes sent without waiting land one after the other, the file emptied once.
    handle = await qmp.execute("guest-file-open", {"path": "/tmp/qga-file", "mode": "w+"})
    await asyncio.gather(qmp.execute("guest-file-write", {"handle": handle, "buf-b64": "YWE="}),
                         qmp.execute("guest-file-write", {"handle": handle, "buf-b64": "YmI="}))
    await qmp.execute("guest-file-close", {"handle": handle})
    handle = await qmp.execute("guest-file-open", {"path": "/tmp/qga-file"})
    expect_equal("linux-guest-file-pipelined-writes", await qmp.execute("guest-file-read", {"handle": handle}),
                 {"count": 4, "buf-b64": "YWFiYg==", "eof": True})
    await qmp.execute("guest-file-close", {"handle": handle})
    info = await qmp.execute("guest-info")
    commands = [c["name"] for c in await qmp.execute("query-commands")]
    expect_equal("linux-guest-info", (info["version"], info["supported_commands"]),
                 ("0.1.0", [{"name": name, "enabled": True, "success-response": True} for name in commands]))
    await qmp.disconnect()


def qmp_shell_test(python, path, guest, check):
    shell = os.path.join(os.path.dirname(python), "qmp-shell")
    run = subprocess.run([shell, path], input="query-processes\n", capture_output=True, text=True, timeout=60)
    replies = [line[len("(QEMU) "):] for line in run.stdout.splitlines() if line.startswith("(QEMU) {")]
    names = []
    if replies:
        names = sorted(f"{p['pid']} {p['ppid']} {p['uid']} {p['name']}" for p in json.loads(replies[0])["return"])
    check("linux-qmp-shell-query-processes = the guest's ps", run.returncode == 0 and names == sorted(guest.view("ps")),
          f"status {run.returncode}, stdout {run.stdout[:300]!r}, stderr {run.stderr!r}")


def portalctl_tests(portalctl, path, guest, check, expect_equal):
    def ctl(*args, timeout=60):
        done = subprocess.run([portalctl, *args, "--socket", path] if "--" not in args else
                              [portalctl, args[0], "--socket", path, *args[1:]],
                              capture_output=True, text=True, timeout=timeout)
        return done.returncode, done.stdout, done.stderr

    status, out, err = ctl("ps")
    rows = out.splitlines()
    expect_equal("linux-portalctl-ps-header", rows[:1], ["    PID    PPID   UID  NAME"])
    expect_equal("linux-portalctl-ps = the guest's ps", (status, sorted(" ".join(row.split()) for row in rows[1:]), err),
                 (0, sorted(guest.view("ps")), ""))
    leading = subprocess.run([portalctl, "--socket", path, "ps"], capture_output=True, text=True, timeout=60)
    expect_equal("linux-portalctl---socket-before-the-subcommand", (leading.returncode, leading.stdout, leading.stderr),
                 (0, out, ""))
    status, out, err = ctl("pstree")
    check("linux-portalctl-pstree", status == 0 and out.splitlines()[0] == "init(1)"
          and f"  portal-mapper({guest.view('mapper')[0]})" in out.splitlines(), out[:300])
    mapper = guest.view("mapper")[0]
    status, out, err = ctl("maps", mapper)
    expect_equal("linux-portalctl-maps = /proc/PID/maps", (status, out.splitlines(), err),
                 (0, [" ".join(line.split()) for line in guest.view("maps")], ""))
    status, out, err = ctl("fds", guest.view("daemon")[0])
    expect_equal("linux-portalctl-fds", (status, [" ".join(l.split()) for l in out.splitlines()]),
                 (0, guest.view("fd")))
    status, out, err = ctl("env", mapper)
    expect_equal("linux-portalctl-env", (status, out.splitlines()), (0, guest.view("environ")))
    status, out, err = ctl("cat", "/etc/passwd")
    expect_equal("linux-portalctl-cat /etc/passwd", (status, out.splitlines()[:3], err), (0, guest.view("passwd"), ""))
    expect_equal("linux-portalctl-cat-missing", ctl("cat", "/no/such/file"),
                 (1, "", "portalctl: guest-file-read: VFS_OPEN for path /no/such/file: the guest cannot open the file (errno 2 ENOENT)\n"))
    expect_equal("linux-portalctl-exec", ctl("exec", "--", "/bin/sh", "-c", "echo hello from $(hostname); exit 3"),
                 (3, f"hello from {guest.view('hostname')[0]}\n", ""))
    # dis: the bytes are the guest's own (the same READ), decoded in x86-64 mode.
    do_exit = guest.view("do_exit")[0]
    status, out, err = ctl("read", "0x" + do_exit, "5", "--json")
    first_bytes = json.loads(out)["hex"] if status == 0 else "?"
    status, out, err = ctl("dis", "0x" + do_exit, "5")
    want_prefix = f"0x{do_exit.lstrip('0')}  {' '.join(first_bytes[i:i + 2] for i in range(0, 10, 2))}"
    check("linux-portalctl-dis", status == 0 and out.startswith(want_prefix) and
          out.split("  ")[-1].split()[0] in ("call", "nop", "jmp", "push", "endbr64"), f"{out!r}, want {want_prefix!r}")
    # watch execve: the program exec runs and the one its shell runs.
    watcher = subprocess.Popen([portalctl, "watch", "execve", "--count", "2", "--socket", path],
                               stdout=subprocess.PIPE, text=True)
    expect_equal("linux-portalctl-watch-ready", watcher.stdout.readline(), "watching execve events\n")
    # Captured output: the guest's /bin/sh runs the command line in a child
    # that execs /bin/sh (an execve syscall, unlike the usermode helper's
    # own start), whose `exec` replaces it with busybox in the same pid.
    expect_equal("linux-portalctl-exec-for-watch", ctl("exec", "--", "/bin/sh", "-c", "exec /bin/busybox true"),
                 (0, "", ""))
    lines = [watcher.stdout.readline(), watcher.stdout.readline()]
    watcher.wait(30)
    fields = [line.split() for line in lines]
    check("linux-portalctl-watch-execve",
          len(fields) == 2 and all(len(f) == 11 and f[0] == "pid" and f[2] == "execve" and f[4] == "args" for f in fields)
          and [f[3] for f in fields] == ["/bin/sh", "/bin/busybox"] and fields[0][1] == fields[1][1], lines)


async def mcp_tests(portalctl, path, guest, check, expect_equal):
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client
    parameters = StdioServerParameters(command=portalctl, args=["mcp", "--socket", path])
    async with stdio_client(parameters) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            names = [tool.name for tool in (await session.list_tools()).tools]
            check("linux-mcp-list-tools", all(name in names for name in [
                "list_processes", "process_mappings", "process_fds", "process_environment", "read_file",
                "run_program", "symbol_address"]), names)
            result = await session.call_tool("list_processes", {})
            got = result.content[0].text if result.isError else \
                sorted(f"{p['pid']} {p['ppid']} {p['uid']} {p['name']}" for p in json.loads(result.content[0].text))
            expect_equal("linux-mcp-list-processes = the guest's ps", (result.isError, got), (False, sorted(guest.view("ps"))))
            result = await session.call_tool("read_file", {"path": "/etc/passwd"})
            text = result.content[0].text if result.isError else json.loads(result.content[0].text)["text"].splitlines()[:3]
            expect_equal("linux-mcp-read-file", (result.isError, text), (False, guest.view("passwd")))


def run(lib, portalctl, python, work, check, expect_equal):
    guest = LinuxGuest(lib, work)
    if not guest.wait_for_view():
        check("linux-guest-view", False, guest.console()[-800:])
        guest.process.kill()
        return
    check("linux-guest-view", True)
    asyncio.run(qmp_queries(guest.socket_path, guest, check, expect_equal))
    qmp_shell_test(python, guest.socket_path, guest, check)
    portalctl_tests(portalctl, guest.socket_path, guest, check, expect_equal)
    asyncio.run(mcp_tests(portalctl, guest.socket_path, guest, check, expect_equal))
    # The end: /tmp/portal-done written through the socket.
    done_file = os.path.join(work, "portal-done")
    with open(done_file, "w") as f:
        f.write("control tests finished")
    pushed = subprocess.run([portalctl, "push", done_file, "/tmp/portal-done", "--socket", guest.socket_path],
                            capture_output=True, text=True, timeout=60)
    expect_equal("linux-portalctl-push", (pushed.returncode, pushed.stdout),
                 (0, "copied 22 bytes from " + done_file + " to the guest's /tmp/portal-done\n"))
    expect_equal("linux-guest-heard-the-host", guest.wait(), 0)
    check("linux-guest-done-line", "guest: the host is done: control tests finished" in guest.console().splitlines(),
          guest.console()[-400:])
    with open(guest.log_path) as f:
        log = [line for line in f.read().splitlines() if line.startswith("portal: ")]
    expect_equal("linux-plugin-log", log, [])
