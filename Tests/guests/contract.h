/*
 * Tests/guests/contract.h - what the bare-metal test guests expect from the
 * host plugin.
 *
 * The guests (guest.c, one per architecture: i386, x86_64, riscv64, aarch64,
 * arm) implement the guest side of the portal exactly like the igloo kernel
 * module (see PROTOCOL.md). To exercise the host they raise *events*: each is
 * a portal conversation on hypercall IGLOO_HYP_SYSCALL_ENTER (0x1338) with
 *
 *     arg1 = event id (CONTRACT_EV_*), arg2 = the event's argument,
 *     arg3 = the region (a fresh page), arg4 = 0 on the first trap.
 *
 * The host attaches one piece of work to hypercall 0x1338 that dispatches on
 * arg1 and does exactly what the comment of that event says, then returns the
 * value given there. The guest checks the value and prints one line per check
 * on its serial port.
 *
 * General rules (every event):
 *  - All numbers are compared on their low 32 bits where PROTOCOL.md says so
 *    (hypercall numbers); event ids and arguments are register-width values.
 *  - Every address given to the host (arg2, the mailbox, the flag) is a guest
 *    virtual address at register width. The guests are little-endian.
 *  - Every command the host sends has pid = 0xffffffff (the host's default:
 *    the guest checks this on every command).
 *  - "Returns V" means: the host finishes the work, writes op = NONE (0) into
 *    the region and puts V into the return register, zero-extended to the
 *    register width. Unless an event says otherwise V fits in 32 bits.
 *  - "Otherwise PROTOCOL_ERROR" means: any response other than the one the
 *    event expects ends the work at once with CONTRACT_RET_PROTOCOL_ERROR.
 *  - A READ or WRITE of more than CONTRACT_REGION_SIZE bytes is sent as
 *    several commands of at most CONTRACT_REGION_SIZE bytes each (the guest
 *    counts a user-window READ/WRITE with size > region size as a host bug).
 *  - Hypercalls outside this list (REGISTER_MEM_REGION 0xbebebebe,
 *    ENABLE_PORTAL_INTERRUPT 0x7901, PORTAL_INTERRUPT 0x7902 without pending
 *    work) behave as PROTOCOL.md says; their return values are ignored.
 *
 * How the guests answer commands (PROTOCOL.md §6, simulated on bare metal):
 *  - Memory: the guest image (code, data, bss, stack; LINK_BASE up to the
 *    end of the image) is "kernel" memory, except a 3-page "user window"
 *    (a static, page-aligned array): its first two pages are mapped user
 *    memory holding contract_user_byte(address), its third page is
 *    FAULT_PAGE, which every copy treats as unmapped. Any other address
 *    (outside the image, or above 4 GiB on a 32-bit guest) faults.
 *  - READ, kernel address: size clamped to CONTRACT_REGION_SIZE; READ_OK with
 *    size = the clamped size, or READ_FAIL (size left as clamped) if any byte
 *    faults. User address: no clamp (a size above the region size is counted
 *    as a host bug and then cut to the region); READ_OK when every byte was
 *    copied, else READ_PARTIAL with size = bytes copied before the fault.
 *  - WRITE: WRITE_OK if every byte was written, else WRITE_FAIL; size is left
 *    unchanged; a size above the region size is answered WRITE_FAIL.
 *  - READ_STR: max = size, 0 or > CONTRACT_REGION_SIZE - 1 means
 *    CONTRACT_REGION_SIZE - 1; copies up to max bytes or to the NUL; READ_OK
 *    with size = length (without the NUL) and a NUL after it in the payload;
 *    READ_FAIL with size 0 if a byte before the end faults.
 *  - READ_TIME: READ_NUM, size = guest clock in ns (x86: the TSC taken as
 *    ns; riscv64: the time CSR * 100; arm/aarch64: the virtual counter
 *    scaled by its frequency).
 *  - Any other op 1..55: WRITE_FAIL. op 0 ends the conversation; op <= 0 as a
 *    signed int or >= 56 ends it too (answered WRITE_FAIL, never sent).
 *  - Regions: a pool of 5 pages used round-robin, one per conversation; the
 *    guest zeroes only the 24-byte header, the payload keeps stale bytes.
 *
 * Boot sequence of a guest (before the events):
 *   1. REGISTER_MEM_REGION: plain hypercall, arg1 = CONTRACT_REGION_SIZE.
 *   2. ENABLE_PORTAL_INTERRUPT: plain hypercall, arg1 = &flag (u64), arg2 = 0.
 *   3. PORTAL_INTERRUPT conversation with arg1 = 1 (nothing is pending: the
 *      host ends it at once).
 * Then the events, in this order: BANNER, BANNER_SHORT, BIG_WRITE, TIME,
 * PARTIAL, FAULT_STR, WRITE_FAULT, UNSUPPORTED_OP, QUEUE_IRQ, IRQ_POKE, END.
 * The guest-bench binaries run only BENCH (after the same boot sequence).
 */
#ifndef PORTAL_TEST_CONTRACT_H
#define PORTAL_TEST_CONTRACT_H

/* ---- protocol numbers (PROTOCOL.md) ---------------------------------------- */

#define CONTRACT_HC_EVENT            0x1338u      /* IGLOO_HYP_SYSCALL_ENTER */
#define CONTRACT_HC_REGISTER_REGION  0xbebebebeu
#define CONTRACT_HC_ENABLE_INTERRUPT 0x7901u
#define CONTRACT_HC_PORTAL_INTERRUPT 0x7902u

#define CONTRACT_PAGE_SIZE    4096u
#define CONTRACT_HEADER_SIZE  24u
#define CONTRACT_REGION_SIZE  4072u   /* PAGE_SIZE - 24: arg1 of REGISTER_MEM_REGION */

/* ---- values the host returns ---------------------------------------------- */

#define CONTRACT_RET_READ_FAILED     0x0bad0001u  /* the guest answered READ_FAIL, as the event expects */
#define CONTRACT_RET_WRITE_FAILED    0x0bad0002u  /* the guest answered WRITE_FAIL, as the event expects */
#define CONTRACT_RET_PROTOCOL_ERROR  0x0bad00eeu  /* an answer the event did not expect */
#define CONTRACT_RET_UNKNOWN_EVENT   0x0bad00ffu  /* arg1 is not a CONTRACT_EV_* id */
#define CONTRACT_RET_END             0x7e57d09eu  /* the END event */

/* ---- the events (arg1 of hypercall 0x1338) -------------------------------- */

/*
 * BANNER, arg2 = address of the guest's banner, a NUL-terminated string that
 * starts with CONTRACT_BANNER_PREFIX.
 * Host: READ_STR {addr = arg2, size = 0}. Expects READ_OK whose payload holds
 * `size` non-NUL bytes followed by a NUL and begins with the 17 bytes of
 * CONTRACT_BANNER_PREFIX. Returns the response's size (the string length).
 * A READ_FAIL: returns CONTRACT_RET_READ_FAILED. Otherwise PROTOCOL_ERROR
 * (also when the payload checks above fail).
 * Guest checks: value == strlen(banner).
 */
#define CONTRACT_EV_BANNER        0x7e570001u
#define CONTRACT_BANNER_PREFIX    "portal-test-guest"

/*
 * BANNER_SHORT, arg2 = address of the banner again.
 * Host: READ_STR {addr = arg2, size = 8}. Expects READ_OK with size 8 and a
 * payload of exactly "portal-t" followed by a NUL. Returns the response's
 * size (8). A READ_FAIL: CONTRACT_RET_READ_FAILED. Otherwise PROTOCOL_ERROR.
 * Guest checks: value == 8.
 */
#define CONTRACT_EV_BANNER_SHORT  0x7e570002u
#define CONTRACT_BANNER_SHORT_LEN 8u

/*
 * BIG_WRITE, arg2 = address of a guest buffer of CONTRACT_BIG_LEN bytes (it
 * is not in the user window; the guest filled it with 0xEE).
 * Host:
 *  1. WRITEs the CONTRACT_BIG_LEN bytes contract_big_byte(0 .. LEN-1) to
 *     arg2 .. arg2+LEN-1, as WRITE commands of at most CONTRACT_REGION_SIZE
 *     bytes each (10000 = 4072 + 4072 + 1856 with full chunks). Each must be
 *     answered WRITE_OK; a WRITE_FAIL returns CONTRACT_RET_WRITE_FAILED.
 *  2. READs the same LEN bytes back, as READ commands {addr, size} of at most
 *     CONTRACT_REGION_SIZE bytes each. Each must be answered READ_OK with
 *     size == the size asked (a READ_FAIL returns CONTRACT_RET_READ_FAILED).
 *  3. Returns contract_fnv1a32() of the LEN bytes read back.
 * Any other answer: PROTOCOL_ERROR.
 * Guest checks: the buffer equals contract_big_byte(i) for every i, and the
 * value == contract_fnv1a32 of that pattern.
 */
#define CONTRACT_EV_BIG_WRITE     0x7e570003u
#define CONTRACT_BIG_LEN          10000u

/* Byte i (0 <= i < CONTRACT_BIG_LEN) of the BIG_WRITE pattern. */
static inline unsigned char contract_big_byte(unsigned int i)
{
    return (unsigned char)((i * 7u) ^ (i >> 8) ^ 0x5cu);
}

/* 32-bit FNV-1a: h = 0x811c9dc5; for each byte b: h ^= b; h *= 0x01000193. */
static inline unsigned int contract_fnv1a32(const unsigned char *p, unsigned int n)
{
    unsigned int h = 0x811c9dc5u;
    for (unsigned int i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x01000193u;
    }
    return h;
}

/*
 * TIME, arg2 = 0.
 * Host: READ_TIME {addr = 0, size = 0}. Expects READ_NUM and returns its size
 * field (the guest's clock in ns), truncated to the register width: this is
 * the one event whose value is 64-bit on 64-bit guests. Otherwise
 * PROTOCOL_ERROR.
 * Guest checks: exactly one READ_TIME was served during the event and the
 * value == the value it served (truncated to the register width).
 */
#define CONTRACT_EV_TIME          0x7e570004u

/*
 * PARTIAL, arg2 = an address in the guest's user window that lies
 * CONTRACT_PARTIAL_BYTES before its FAULT_PAGE (a 4 KiB page the guest treats
 * as unmapped; user addresses are never clamped and a short copy answers
 * READ_PARTIAL).
 * Host: READ {addr = arg2, size = CONTRACT_PARTIAL_ASK}. Expects READ_PARTIAL
 * with payload byte k == contract_user_byte(arg2 + k) for k < size. Returns
 * the response's size (100). A READ_FAIL: CONTRACT_RET_READ_FAILED. Otherwise
 * (also READ_OK, or a payload mismatch) PROTOCOL_ERROR.
 * Guest checks: value == CONTRACT_PARTIAL_BYTES.
 */
#define CONTRACT_EV_PARTIAL       0x7e570005u
#define CONTRACT_PARTIAL_BYTES    100u
#define CONTRACT_PARTIAL_ASK      256u

/* The byte the guest keeps at user-window address a (mapped pages only). */
static inline unsigned char contract_user_byte(unsigned long long a)
{
    return (unsigned char)(a ^ (a >> 8) ^ 0xa5u);
}

/*
 * FAULT_STR, arg2 = FAULT_PAGE + 16.
 * Host: READ_STR {addr = arg2, size = 0}. Expects READ_FAIL and returns
 * CONTRACT_RET_READ_FAILED. Otherwise PROTOCOL_ERROR.
 * Guest checks: value == CONTRACT_RET_READ_FAILED.
 */
#define CONTRACT_EV_FAULT_STR     0x7e570006u

/*
 * WRITE_FAULT, arg2 = FAULT_PAGE + 32.
 * Host: WRITE {addr = arg2, size = 4, payload = 11 22 33 44}. Expects
 * WRITE_FAIL and returns CONTRACT_RET_WRITE_FAILED. Otherwise PROTOCOL_ERROR.
 * Guest checks: value == CONTRACT_RET_WRITE_FAILED.
 */
#define CONTRACT_EV_WRITE_FAULT   0x7e570007u

/*
 * UNSUPPORTED_OP, arg2 = 0.
 * Host: one command with op = CONTRACT_UNSUPPORTED_OP (5, DUMP in the default
 * op table; the guests implement only READ, WRITE, READ_STR and READ_TIME),
 * addr = 0, size = 0. The guest answers an op it does not implement with
 * WRITE_FAIL: the host expects WRITE_FAIL and returns
 * CONTRACT_RET_WRITE_FAILED. Otherwise PROTOCOL_ERROR.
 * Guest checks: value == CONTRACT_RET_WRITE_FAILED.
 */
#define CONTRACT_EV_UNSUPPORTED_OP 0x7e570008u
#define CONTRACT_UNSUPPORTED_OP    5u

/*
 * QUEUE_IRQ, arg2 = address of the mailbox: CONTRACT_MAILBOX_SLOTS u32 slots,
 * all 0.
 * Host: sends no command. It remembers the mailbox address, sets its "next
 * slot" to 0, queues the interrupt named "alpha" and then the one named
 * "beta" (their handlers are registered before the guest runs; queueing
 * writes the u64 value 1 to the flag given by ENABLE_PORTAL_INTERRUPT), and
 * returns 0.
 * Guest checks: value == 0 and the flag == 1 afterwards.
 */
#define CONTRACT_EV_QUEUE_IRQ     0x7e570009u
#define CONTRACT_MAILBOX_SLOTS    4u

/*
 * IRQ_POKE, arg2 = 0. The guest finds the flag set at the start of this
 * igloo_portal() call, so it first runs a PORTAL_INTERRUPT conversation
 * (0x7902, arg1 = &flag). In that conversation the host snapshots and clears
 * its pending set, writes the u64 0 to the flag, and runs the pending
 * interrupt works in queue order:
 *   "alpha": WRITE {addr = mailbox + 4 * slot, size = 4, payload =
 *            CONTRACT_ALPHA_VALUE as a little-endian u32}, expects WRITE_OK,
 *            then slot += 1;
 *   "beta":  the same with CONTRACT_BETA_VALUE.
 * (so alpha lands in slot 0 and beta in slot 1). The interrupt conversation
 * returns 0 (ignored). Then the IRQ_POKE conversation itself: the host sends
 * no command and returns the number of interrupt works that have completed
 * successfully since the host started (2).
 * Guest checks: exactly one PORTAL_INTERRUPT conversation ran during the
 * call, the flag == 0, the mailbox == {ALPHA, BETA, 0, 0}, value == 2.
 */
#define CONTRACT_EV_IRQ_POKE      0x7e57000au
#define CONTRACT_ALPHA_VALUE      0xa1fa0001u
#define CONTRACT_BETA_VALUE       0xbe7a0002u

/*
 * END, arg2 = the number of checks that failed so far (for the host's log).
 * Host: sends no command, returns CONTRACT_RET_END.
 * Guest checks: value == CONTRACT_RET_END, and (over the whole run) that
 * every command carried pid 0xffffffff and no user-window READ/WRITE asked
 * for more than CONTRACT_REGION_SIZE bytes.
 */
#define CONTRACT_EV_END           0x7e57000bu

/*
 * BENCH, arg2 = N (the guest-bench binaries only).
 * Host: N commands READ {addr = CONTRACT_BENCH_ADDR for the guest's
 * architecture, size = 8}, one after another in this one conversation, each
 * expected to be answered READ_OK with size 8 (otherwise PROTOCOL_ERROR at
 * once). Returns the 8 payload bytes of the last answer as a little-endian
 * u64 truncated to the register width (CONTRACT_BENCH_WORD, so 0x44332211
 * on 32-bit guests); N == 0 returns 0 without a command.
 * Guest checks: it served exactly N READs during the event and value ==
 * CONTRACT_BENCH_WORD truncated to the register width.
 */
#define CONTRACT_EV_BENCH         0x7e570010u
#define CONTRACT_BENCH_WORD       0x8877665544332211ull

/*
 * READ_BENCH, arg2 = N (the guest-read-bench binaries only): the host times
 * its own memory reads, the way an analysis module makes them (direct memory
 * first, or portal READs with direct_memory=off).
 * Host: N 8-byte reads at CONTRACT_BENCH_ADDR, then max(N / 64, 1) reads of
 * the 4 KiB contract page, each checked against the page's first word.
 * Returns the last 8-byte value as for BENCH (0 for N == 0).
 * Guest checks: value == CONTRACT_BENCH_WORD truncated to the register width
 * (it does not count the READs it served: with direct memory there are none).
 */
#define CONTRACT_EV_READ_BENCH    0x7e570011u

/*
 * The contract page: every guest links a page at LINK_BASE + 0x1000 (a fixed
 * address per architecture) that starts with the u64 CONTRACT_BENCH_WORD,
 * followed by the 16 bytes "portal-contract\0". BENCH reads its first 8
 * bytes. Select by qemu_info_t.target_name.
 */
#define CONTRACT_PAGE_ADDR_I386     0x00101000u   /* target_name "i386" */
#define CONTRACT_PAGE_ADDR_X86_64   0x00101000u   /* "x86_64" */
#define CONTRACT_PAGE_ADDR_RISCV64  0x80001000u   /* "riscv64" */
#define CONTRACT_PAGE_ADDR_AARCH64  0x40101000u   /* "aarch64" */
#define CONTRACT_PAGE_ADDR_ARM      0x40101000u   /* "arm" */
#define CONTRACT_BENCH_ADDR(page)   (page)        /* the bench word: offset 0 */
#define CONTRACT_PAGE_MAGIC         "portal-contract"

/*
 * The control guests (guest-control, guest-control-deaf), for the control
 * socket's tests: after the boot sequence,
 *  - guest-control prints "control: polling the interrupt flag" and then,
 *    like the guest module's timer, runs a PORTAL_INTERRUPT conversation
 *    (arg1 = &flag) every CONTRACT_CONTROL_SPIN idle loop iterations, until
 *    the u32 at CONTRACT_PAGE_ADDR + CONTRACT_CONTROL_STOP_OFFSET (0 at boot)
 *    is non-zero; it prints "control: stop word 0xV" and exits with the
 *    usual summary (no other check).
 *  - guest-control-deaf prints "control: not looking at the interrupt flag"
 *    and spins without another trap until QEMU is stopped.
 * Both link the symbol control_code: three known instructions (x86: mov
 * eax, 0x1338; out 0x88, eax; ret; the hypercall sequences of the other
 * architectures likewise) for the disassembly test.
 */
#define CONTRACT_CONTROL_STOP_OFFSET 24u
#ifndef CONTRACT_CONTROL_SPIN
#define CONTRACT_CONTROL_SPIN 20000u
#endif

/* The number of round trips the guest-bench binaries ask for (build.sh may
 * override it with -DBENCH_N=...). */
#ifndef BENCH_N
#define BENCH_N 1000000u
#endif

#endif /* PORTAL_TEST_CONTRACT_H */
