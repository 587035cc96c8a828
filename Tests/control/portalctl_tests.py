"""portalctl against the running x86_64 control guest (called by test_control.py)."""
import json
import subprocess

CONTRACT_PAGE = 0x101000


def run(portalctl, socket_path, check, expect_equal):
    def ctl(*args):
        done = subprocess.run([portalctl, *args, "--socket", socket_path], capture_output=True, text=True, timeout=60)
        return done.returncode, done.stdout, done.stderr

    expect_equal("portalctl-info", ctl("info"), (0, (
        "plugin      portal 0.1.0 in qemu\n"
        "guest       x86_64, 64-bit little-endian, 1 vCPU\n"
        "region      4072 payload bytes\n"
        "ops         55 (MAX 56)\n"
        "live        0 conversations\n"
        "interrupts  none pending\n"
        "requests    0 waiting for the guest\n"), ""))
    expect_equal("portalctl-read", ctl("read", "0x101000", "40"), (0, (
        "0x00101000  11 22 33 44 55 66 77 88 70 6f 72 74 61 6c 2d 63  |.\"3DUfw.portal-c|\n"
        "0x00101010  6f 6e 74 72 61 63 74 00 00 00 00 00 00 00 00 00  |ontract.........|\n"
        "0x00101020  00 00 00 00 00 00 00 00                          |........|\n"), ""))
    expect_equal("portalctl-read-json", ctl("read", "1052672", "4", "--json"),
                 (0, '{"address":1052672,"size":4,"hex":"11223344"}\n', ""))
    expect_equal("portalctl-str", ctl("str", "0x101008"), (0, "portal-contract\n", ""))
    # control_code (contract.h): the hypercall sequence, decoded by Capstone in x86-64 mode.
    expect_equal("portalctl-dis", ctl("dis", "0x102000", "8"), (0, (
        "0x102000  b8 38 13 00 00            mov eax, 0x1338\n"
        "0x102005  e7 88                     out 0x88, eax\n"
        "0x102007  c3                        ret\n"), ""))
    code, out, err = ctl("dis", "0x102000", "8", "--json")
    expect_equal("portalctl-dis-json", (code, json.loads(out) if code == 0 else out, err), (0, [
        {"address": 0x102000, "bytes": "b838130000", "mnemonic": "mov", "operands": "eax, 0x1338"},
        {"address": 0x102005, "bytes": "e788", "mnemonic": "out", "operands": "0x88, eax"},
        {"address": 0x102007, "bytes": "c3", "mnemonic": "ret", "operands": ""}], ""))
    # A scratch word after the stop word: written and read back.
    expect_equal("portalctl-write", ctl("write", "0x10101c", "deadbeef"), (0, "wrote 4 bytes at 0x10101c\n", ""))
    expect_equal("portalctl-write-read-back", ctl("read", "0x10101c", "4")[1],
                 "0x0010101c  de ad be ef                                      |....|\n")
    expect_equal("portalctl-read-fault", ctl("read", "0x10", "4"),
                 (1, "", "portalctl: guest-memory-read: reading 4 bytes at 0x10 stopped after 0 bytes (READ_FAIL)\n"))
    expect_equal("portalctl-bad-hex", ctl("write", "0x10101c", "xyz"),
                 (1, "", "portalctl: Parameter 'hex' expects an even number of hexadecimal digits (at least 2)\n"))
    code, out, err = ctl("stats")
    check("portalctl-stats", code == 0 and err == "" and out.startswith("round-trips ")
          and "\nops:\n  READ " in out and "\nconversations:\n  started " in out and "\nlatency-ns:\n  p50 " in out, out + err)
    expect_equal("portalctl-no-socket", subprocess.run(
        [portalctl, "info", "--socket", socket_path + ".missing"], capture_output=True, text=True).stderr,
        f"portalctl: cannot connect to {socket_path}.missing: No such file or directory\n")
