/*
 * guest.c - a bare-metal guest that speaks the portal protocol like the igloo
 * kernel module, for i386, x86_64, riscv64, aarch64 and arm (A32).
 *
 * One source for every architecture: the few architecture-specific pieces
 * (hypercall instruction, serial port, exit, clock) are at the top. The
 * start-up code (start-ARCH.S) sets up a stack (and, on x86_64, long mode)
 * and calls guest_main(); the linker scripts (ARCH.ld) place the image and
 * the contract page (see contract.h).
 *
 * Built three ways (build.sh):
 *   guest                 the event script of contract.h, one check line each
 *   guest-bench           -DGUEST_BENCH: only the BENCH event, N = BENCH_N
 *   guest-read-bench      -DGUEST_READ_BENCH: only the READ_BENCH event, N = BENCH_N
 *   guest-noplugin-bench  -DGUEST_NOPLUGIN_BENCH: N+1 bare hypercalls and N
 *                         local READ-handler runs, no host needed
 *
 * Exit codes (guest_exit): 0 = every check passed, 1 = a check failed,
 * 2 = unexpected exception. run.sh maps each architecture's QEMU exit status
 * back to these.
 */
#include "contract.h"

typedef unsigned char u8;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef unsigned long ureg;     /* register width: 32 bits on i386/arm, 64 elsewhere */

#define PAGE CONTRACT_PAGE_SIZE
#define REGION_SIZE CONTRACT_REGION_SIZE

/* ---- protocol numbers (PROTOCOL.md §2) ------------------------------------ */

enum {
    OP_NONE = 0, OP_READ = 1, OP_WRITE = 2, OP_READ_STR = 3,
    OP_READ_TIME = 17, OP_MAX = 56,
};
#define RESP_READ_OK      0xf0000001u
#define RESP_READ_FAIL    0xf0000002u
#define RESP_READ_PARTIAL 0xf0000003u
#define RESP_WRITE_OK     0xf0000004u
#define RESP_WRITE_FAIL   0xf0000005u
#define RESP_READ_NUM     0xf0000006u
#define CURRENT_PID       0xffffffffu

struct region {
    u32 op;
    u32 pid;
    u64 addr;
    u64 size;
    u8 payload[REGION_SIZE];
};
_Static_assert(sizeof(struct region) == PAGE, "a region is one page");

/* ---- architecture --------------------------------------------------------- */

static void guest_exit(int code) __attribute__((noreturn));

/* hypercall() where the number and arg1..arg4 go in the registers NUM and
 * A1..A4, the result comes back in A1, and INSN is the trapping instruction
 * (riscv64, aarch64, arm). */
#define REGISTER_HYPERCALL(INSN, NUM, A1, A2, A3, A4)                          \
    static inline ureg hypercall(ureg num, ureg a1, ureg a2, ureg a3, ureg a4) \
    {                                                                          \
        register ureg r_num __asm__(NUM) = num;                                \
        register ureg r_a1 __asm__(A1) = a1;                                   \
        register ureg r_a2 __asm__(A2) = a2;                                   \
        register ureg r_a3 __asm__(A3) = a3;                                   \
        register ureg r_a4 __asm__(A4) = a4;                                   \
        __asm__ volatile(INSN                                                  \
                         : "+r"(r_a1)                                          \
                         : "r"(r_num), "r"(r_a2), "r"(r_a3), "r"(r_a4)         \
                         : "memory");                                          \
        return r_a1;                                                           \
    }

#if defined(__aarch64__) || defined(__arm__)
/* The PL011 UART of QEMU's virt board, on both Arm architectures. */
#define PL011 ((volatile u32 *)0x09000000)
static void uart_putc(char c)
{
    while (PL011[0x18 / 4] & 0x20) {   /* FR.TXFF */
    }
    PL011[0] = (u8)c;
}
/* guest_exit() by an Arm semihosting call: operation OP in register R0, the
 * address of a parameter block {ADP_Stopped_ApplicationExit, code} in R1,
 * then INSN; QEMU exits with status `code`. */
#define SEMIHOSTING_EXIT(INSN, OP, R0, R1)                                \
    static void guest_exit(int code)                                      \
    {                                                                     \
        static volatile ureg block[2];                                    \
        block[0] = 0x20026;                                               \
        block[1] = (ureg)code;                                            \
        register ureg r_op __asm__(R0) = OP;                              \
        register ureg r_block __asm__(R1) = (ureg)block;                  \
        __asm__ volatile(INSN : : "r"(r_op), "r"(r_block) : "memory");    \
        for (;;) {                                                        \
            __asm__ volatile("wfi");                                      \
        }                                                                 \
    }
/* The generic timer's count `cnt` at `frq` Hz as nanoseconds; the count
 * itself when the frequency is unusable (0, or above 1 GHz). */
static u64 timer_ns(u64 cnt, ureg frq)
{
    if (frq == 0 || frq > 1000000000u) {
        return cnt;
    }
    return cnt * (1000000000u / frq);
}
#endif

#if defined(__i386__) || defined(__x86_64__)

#if defined(__x86_64__)
#define ARCH_NAME "x86_64"
#define CONTRACT_PAGE_ADDR CONTRACT_PAGE_ADDR_X86_64
/* rax = number, rdi rsi rdx r10 = arg1..arg4, rax = result */
static inline ureg hypercall(ureg num, ureg a1, ureg a2, ureg a3, ureg a4)
{
    register ureg r10 __asm__("r10") = a4;
    ureg ret;
    __asm__ volatile("outl %%eax, $0x88"
                     : "=a"(ret)
                     : "a"(num), "D"(a1), "S"(a2), "d"(a3), "r"(r10)
                     : "memory");
    return ret;
}
#else
#define ARCH_NAME "i386"
#define CONTRACT_PAGE_ADDR CONTRACT_PAGE_ADDR_I386
/* eax = number, ebx ecx edx esi = arg1..arg4, eax = result */
static inline ureg hypercall(ureg num, ureg a1, ureg a2, ureg a3, ureg a4)
{
    ureg ret;
    __asm__ volatile("outl %%eax, $0x88"
                     : "=a"(ret)
                     : "a"(num), "b"(a1), "c"(a2), "d"(a3), "S"(a4)
                     : "memory");
    return ret;
}
#endif

static inline void outb(unsigned short port, u8 v)
{
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}
static inline u8 inb(unsigned short port)
{
    u8 v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static void uart_putc(char c)
{
    while (!(inb(0x3f8 + 5) & 0x20)) {
    }
    outb(0x3f8, (u8)c);
}
/* isa-debug-exit at 0xf4: QEMU exits with status (code << 1) | 1. */
static void guest_exit(int code)
{
    __asm__ volatile("outl %0, $0xf4" : : "a"((u32)code));
    for (;;) {
        __asm__ volatile("cli; hlt");
    }
}
/* The TSC, taken as nanoseconds (uncalibrated, monotonic). */
static u64 clock_ns(void)
{
    u32 lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((u64)hi << 32) | lo;
}

#elif defined(__riscv) && __riscv_xlen == 64

#define ARCH_NAME "riscv64"
#define CONTRACT_PAGE_ADDR CONTRACT_PAGE_ADDR_RISCV64
/* a7 = number, a0..a3 = arg1..arg4, a0 = result; xori x0, x0, 0 */
REGISTER_HYPERCALL(".4byte 0x00004013", "a7", "a0", "a1", "a2", "a3")
#define UART ((volatile u8 *)0x10000000)   /* ns16550a of the virt board */
static void uart_putc(char c)
{
    while (!(UART[5] & 0x20)) {
    }
    UART[0] = (u8)c;
}
/* sifive_test at 0x100000: 0x5555 = pass (status 0), code << 16 | 0x3333 = fail. */
static void guest_exit(int code)
{
    volatile u32 *test = (volatile u32 *)0x100000;
    *test = code == 0 ? 0x5555u : (((u32)code << 16) | 0x3333u);
    for (;;) {
        __asm__ volatile("wfi");
    }
}
/* The time CSR of the virt board counts at 10 MHz. */
static u64 clock_ns(void)
{
    u64 t;
    __asm__ volatile("rdtime %0" : "=r"(t));
    return t * 100;
}

#elif defined(__aarch64__)

#define ARCH_NAME "aarch64"
#define CONTRACT_PAGE_ADDR CONTRACT_PAGE_ADDR_AARCH64
/* x8 = number, x0..x3 = arg1..arg4, x0 = result; msr S0_0_c5_c0_0, xzr */
REGISTER_HYPERCALL(".inst 0xd500501f", "x8", "x0", "x1", "x2", "x3")
/* Semihosting SYS_EXIT (0x18). */
SEMIHOSTING_EXIT("hlt #0xf000", 0x18, "x0", "x1")
static u64 clock_ns(void)
{
    u64 cnt, frq;
    __asm__ volatile("isb; mrs %0, cntvct_el0" : "=r"(cnt));
    __asm__ volatile("mrs %0, cntfrq_el0" : "=r"(frq));
    return timer_ns(cnt, frq);
}

#elif defined(__arm__)

#define ARCH_NAME "arm"
#define CONTRACT_PAGE_ADDR CONTRACT_PAGE_ADDR_ARM
/* r7 = number, r0..r3 = arg1..arg4, r0 = result; mcr p7, 0, r0, c0, c0, 0 */
REGISTER_HYPERCALL(".inst 0xee000710", "r7", "r0", "r1", "r2", "r3")
/* Semihosting SYS_EXIT_EXTENDED (0x20): plain SYS_EXIT on A32 can only
 * say 0 or 1. */
SEMIHOSTING_EXIT("svc 0x123456", 0x20, "r0", "r1")
static u64 clock_ns(void)
{
    u32 lo, hi, frq;
    __asm__ volatile("isb; mrrc p15, 1, %0, %1, c14" : "=r"(lo), "=r"(hi));
    __asm__ volatile("mrc p15, 0, %0, c14, c0, 0" : "=r"(frq));
    return timer_ns(((u64)hi << 32) | lo, frq);
}

#else
#error "unsupported architecture"
#endif

/* ---- freestanding library ------------------------------------------------- */

void *memset(void *d, int c, unsigned long n)
{
    volatile u8 *p = d;
    while (n--) {
        *p++ = (u8)c;
    }
    return d;
}

void *memcpy(void *d, const void *s, unsigned long n)
{
    volatile u8 *p = d;
    const u8 *q = s;
    while (n--) {
        *p++ = *q++;
    }
    return d;
}

__attribute__((unused)) static unsigned long str_len(const char *s)
{
    unsigned long n = 0;
    while (s[n]) {
        n++;
    }
    return n;
}

static void print(const char *s)
{
    while (*s) {
        if (*s == '\n') {
            uart_putc('\r');
        }
        uart_putc(*s++);
    }
}

static void print_hex(u64 v)
{
    char buf[17];
    int i = 16;
    buf[i] = 0;
    do {
        buf[--i] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v && i > 0);
    print("0x");
    print(&buf[i]);
}

/* x / 10 for 32-bit x without a division instruction or library call. */
static u32 div10(u32 x)
{
    return (u32)(((u64)x * 0xcccccccdull) >> 35);
}

static void print_dec(u32 v)
{
    char buf[11];
    int i = 10;
    buf[i] = 0;
    do {
        u32 q = div10(v);
        buf[--i] = (char)('0' + (v - q * 10));
        v = q;
    } while (v);
    print(&buf[i]);
}

/* ---- memory the guest owns ------------------------------------------------ */

extern u8 __image_start[], __image_end[], __bss_start[], __bss_end[];

/* The contract page (contract.h): the linker script puts it at
 * LINK_BASE + 0x1000. */
struct contract_page {
    u64 bench_word;
    char magic[16];
    u32 control_stop;     /* CONTRACT_CONTROL_STOP_OFFSET: the control guests poll it */
};
__attribute__((section(".contract"), aligned(4096), used))
static struct contract_page contract_page = {
    CONTRACT_BENCH_WORD, CONTRACT_PAGE_MAGIC, 0,
};

/* Regions: a pool of pages used round-robin, one per conversation, so that
 * consecutive conversations use different pages and each page is reused
 * later with stale payload bytes (as with the kernel's page allocator). */
#define POOL_PAGES 5
static struct region pool[POOL_PAGES] __attribute__((aligned(4096)));
static unsigned int pool_next;

/* The "user" window: three pages, the first two mapped, the third
 * (FAULT_PAGE) treated as unmapped by every copy routine. */
static u8 user_window[3 * PAGE] __attribute__((aligned(4096)));
#define USER_BASE ((u64)(ureg)user_window)
#define USER_END (USER_BASE + 3 * PAGE)
#define FAULT_PAGE (USER_BASE + 2 * PAGE)

static volatile u64 irq_flag;                       /* ENABLE_PORTAL_INTERRUPT */
__attribute__((unused)) static volatile u32 mailbox[CONTRACT_MAILBOX_SLOTS]; /* QUEUE_IRQ */
__attribute__((unused)) static u8 big_buffer[CONTRACT_BIG_LEN + 8];         /* BIG_WRITE, at an odd offset */

static const char banner[] = CONTRACT_BANNER_PREFIX " " ARCH_NAME " v1";

/* Statistics the checks look at. */
static u32 conversations, irq_conversations;
static u32 served_read, served_time, served_unsupported;
static u32 bad_pid, host_oversize;
static u64 last_time;

static int is_user(u64 a)
{
    return a >= USER_BASE && a < USER_END;
}

/* Would a kernel dereference of this byte succeed? Bytes of the image are
 * mapped; FAULT_PAGE and everything outside the image are not. */
static int byte_ok(u64 a)
{
    if (a >= FAULT_PAGE && a < FAULT_PAGE + PAGE) {
        return 0;
    }
    return a >= (u64)(ureg)__image_start && a < (u64)(ureg)__image_end;
}

/* Copies up to n bytes from guest address src; returns how many bytes were
 * copied before the first fault (like copy_from_user's complement). */
static u64 copy_in(u8 *dst, u64 src, u64 n)
{
    u64 i;
    for (i = 0; i < n; i++) {
        if (!byte_ok(src + i)) {
            break;
        }
        dst[i] = *(volatile u8 *)(ureg)(src + i);
    }
    return i;
}

static u64 copy_out(u64 dst, const u8 *src, u64 n)
{
    u64 i;
    for (i = 0; i < n; i++) {
        if (!byte_ok(dst + i)) {
            break;
        }
        *(volatile u8 *)(ureg)(dst + i) = src[i];
    }
    return i;
}

/* ---- the portal (PROTOCOL.md §4, §6) -------------------------------------- */

static void handle_command(struct region *r)
{
    u32 op = r->op;
    if (r->pid != CURRENT_PID) {
        bad_pid++;
    }
    switch (op) {
    case OP_READ: {
        u64 size = r->size;
        served_read++;
        if (is_user(r->addr)) {
            /* No clamp for user addresses: the host must keep size within
             * the region. Count a violation and protect the page. */
            if (size > REGION_SIZE) {
                host_oversize++;
                size = REGION_SIZE;
            }
            u64 n = copy_in(r->payload, r->addr, size);
            r->op = n == size ? RESP_READ_OK : RESP_READ_PARTIAL;
            r->size = n;
        } else {
            if (size > REGION_SIZE) {
                size = REGION_SIZE;
            }
            u64 n = copy_in(r->payload, r->addr, size);
            r->size = size;
            r->op = n == size ? RESP_READ_OK : RESP_READ_FAIL;
        }
        break;
    }
    case OP_WRITE: {
        u64 size = r->size;
        if (size > REGION_SIZE) {
            if (is_user(r->addr)) {
                host_oversize++;
            }
            r->op = RESP_WRITE_FAIL;
            break;
        }
        r->op = copy_out(r->addr, r->payload, size) == size ? RESP_WRITE_OK
                                                            : RESP_WRITE_FAIL;
        break;
    }
    case OP_READ_STR: {
        u64 max = r->size;
        u64 i;
        if (max == 0 || max > REGION_SIZE - 1) {
            max = REGION_SIZE - 1;
        }
        for (i = 0; i < max; i++) {
            if (!byte_ok(r->addr + i)) {
                break;
            }
            u8 c = *(volatile u8 *)(ureg)(r->addr + i);
            r->payload[i] = c;
            if (c == 0) {
                break;
            }
        }
        if (i < max && !byte_ok(r->addr + i)) {
            r->op = RESP_READ_FAIL;
            r->size = 0;
            break;
        }
        r->payload[i] = 0;
        r->size = i;
        r->op = RESP_READ_OK;
        break;
    }
    case OP_READ_TIME:
        last_time = clock_ns();
        served_time++;
        r->size = last_time;
        r->op = RESP_READ_NUM;
        break;
    default:
        served_unsupported++;
        r->op = RESP_WRITE_FAIL;
        break;
    }
}

static ureg igloo_portal(ureg num, ureg a1, ureg a2)
{
    if ((u32)num != CONTRACT_HC_PORTAL_INTERRUPT && irq_flag != 0) {
        irq_conversations++;
        (void)igloo_portal(CONTRACT_HC_PORTAL_INTERRUPT, (ureg)&irq_flag, 0);
    }
    struct region *r = &pool[pool_next];
    pool_next = (pool_next + 1) % POOL_PAGES;
    conversations++;
    r->op = 0;
    r->pid = 0;
    r->addr = 0;
    r->size = 0;

    ureg arg4 = 0;
    ureg ret;
    for (;;) {
        ret = hypercall(num, a1, a2, (ureg)r, arg4);
        int op = (int)*(volatile u32 *)&r->op;
        if (op == OP_NONE) {
            break;
        }
        if (op < 0 || op >= OP_MAX) {
            r->op = RESP_WRITE_FAIL;   /* the host never sees this answer */
            break;
        }
        handle_command(r);
        arg4 = r->op;
    }
    return ret;
}

/* ---- checks --------------------------------------------------------------- */

static u32 checks, failed;

static void check_value(const char *name, int ok, u64 got, u64 want, int show)
{
    checks++;
    print("check ");
    print(name);
    if (ok) {
        print(": ok\n");
        return;
    }
    failed++;
    print(": FAILED");
    if (show) {
        print(" (got ");
        print_hex(got);
        print(", want ");
        print_hex(want);
        print(")");
    }
    print("\n");
}

static void check_eq(const char *name, u64 got, u64 want)
{
    check_value(name, got == want, got, want, 1);
}

static void finish(void) __attribute__((noreturn));
static void finish(void)
{
    print("summary: ");
    print_dec(checks);
    print(" checks, ");
    print_dec(checks - failed);
    print(" passed, ");
    print_dec(failed);
    print(" failed\n");
    print(failed == 0 ? "RESULT: PASS\n" : "RESULT: FAIL\n");
    guest_exit(failed == 0 ? 0 : 1);
}

/* Called by the start-up code's exception vectors (on arm with the
 * exception's lr and the vector number; elsewhere the arguments are 0). */
void guest_exception(ureg arg0, ureg arg1) __attribute__((noreturn));
void guest_exception(ureg arg0, ureg arg1)
{
    print("unexpected exception");
#if defined(__aarch64__)
    u64 esr, elr, far;
    __asm__ volatile("mrs %0, esr_el1; mrs %1, elr_el1; mrs %2, far_el1"
                     : "=r"(esr), "=r"(elr), "=r"(far));
    print(" (esr ");
    print_hex(esr);
    print(", elr ");
    print_hex(elr);
    print(", far ");
    print_hex(far);
    print(")");
#elif defined(__arm__)
    print(" (vector ");
    print_hex(arg1);
    print(", lr ");
    print_hex(arg0);
    print(")");
#elif defined(__riscv)
    u64 cause, epc, tval;
    __asm__ volatile("csrr %0, mcause; csrr %1, mepc; csrr %2, mtval"
                     : "=r"(cause), "=r"(epc), "=r"(tval));
    print(" (mcause ");
    print_hex(cause);
    print(", mepc ");
    print_hex(epc);
    print(", mtval ");
    print_hex(tval);
    print(")");
#endif
    (void)arg0;
    (void)arg1;
    print("\nRESULT: FAIL\n");
    guest_exit(2);
}

static void boot(void)
{
    for (u8 *p = __bss_start; p < __bss_end; p++) {
        *(volatile u8 *)p = 0;
    }
    print(banner);
    print("\n");

    /* Junk in every page of the pool: the payload is never cleared. */
    for (unsigned int i = 0; i < POOL_PAGES; i++) {
        u8 *p = (u8 *)&pool[i];
        for (unsigned int k = 0; k < PAGE; k++) {
            p[k] = (u8)(0xa5 ^ k ^ (k >> 8) ^ (i * 0x3b));
        }
    }
    for (u64 a = USER_BASE; a < FAULT_PAGE; a++) {
        user_window[a - USER_BASE] = contract_user_byte(a);
    }
    for (u64 a = FAULT_PAGE; a < USER_END; a++) {
        user_window[a - USER_BASE] = 0xff;
    }

    if ((ureg)&contract_page != CONTRACT_PAGE_ADDR) {
        print("contract page misplaced\n");
        failed++;
    }

    (void)hypercall(CONTRACT_HC_REGISTER_REGION, REGION_SIZE, 0, 0, 0);
    (void)hypercall(CONTRACT_HC_ENABLE_INTERRUPT, (ureg)&irq_flag, 0, 0, 0);
    (void)igloo_portal(CONTRACT_HC_PORTAL_INTERRUPT, 1, 0);
}

__attribute__((unused)) static ureg event(u32 id, ureg arg)
{
    return igloo_portal(CONTRACT_HC_EVENT, id, arg);
}

#if defined(GUEST_BENCH)

void guest_main(void)
{
    boot();
    u32 before = served_read;
    ureg v = event(CONTRACT_EV_BENCH, BENCH_N);
    check_eq("bench-reads", served_read - before, BENCH_N);
    check_eq("bench-value", v, BENCH_N ? (ureg)CONTRACT_BENCH_WORD : 0);
    finish();
}

#elif defined(GUEST_READ_BENCH)

void guest_main(void)
{
    boot();
    ureg v = event(CONTRACT_EV_READ_BENCH, BENCH_N);
    check_eq("read-bench-value", v, BENCH_N ? (ureg)CONTRACT_BENCH_WORD : 0);
    finish();
}

#elif defined(GUEST_NOPLUGIN_BENCH)

/* The guest's share of a BENCH conversation without any host: N+1 trap
 * instructions and N runs of the READ handler on a command written locally. */
void guest_main(void)
{
    boot();
    struct region *r = &pool[0];
    u64 sum = 0;
    u32 before = served_read;
    ureg arg4 = 0;
    for (u32 i = 0; i <= BENCH_N; i++) {
        (void)hypercall(CONTRACT_HC_EVENT + 0x10000u, CONTRACT_EV_BENCH, BENCH_N,
                        (ureg)r, arg4);
        if (i == BENCH_N) {
            break;
        }
        r->op = OP_READ;
        r->pid = CURRENT_PID;
        r->addr = CONTRACT_PAGE_ADDR;
        r->size = 8;
        handle_command(r);
        arg4 = r->op;
        u64 w;
        memcpy(&w, r->payload, 8);
        sum += w;
    }
    check_eq("noplugin-reads", served_read - before, BENCH_N);
    check_eq("noplugin-sum", sum, CONTRACT_BENCH_WORD * (u64)BENCH_N);
    finish();
}

#elif defined(GUEST_CONTROL) || defined(GUEST_CONTROL_DEAF)

/* Known instructions for the control socket's disassembly test
 * (contract.h, CONTROL_CODE). */
#if defined(__x86_64__) || defined(__i386__)
__asm__(".text\n.globl control_code\ncontrol_code:\n"
        "movl $0x1338, %eax\noutl %eax, $0x88\nret\n");
#elif defined(__riscv)
__asm__(".text\n.globl control_code\ncontrol_code:\n"
        "li a7, 0x1338\nxori x0, x0, 0\nret\n");
#elif defined(__aarch64__)
__asm__(".text\n.globl control_code\ncontrol_code:\n"
        "mov x8, #0x1338\nmsr S0_0_c5_c0_0, xzr\nret\n");
#elif defined(__arm__)
__asm__(".text\n.arm\n.globl control_code\ncontrol_code:\n"
        "movw r7, #0x1338\nmcr p7, 0, r0, c0, c0, 0\nbx lr\n");
#endif

void guest_main(void)
{
    boot();
    /* guest-control, like the guest module's timer: an interrupt
     * conversation now and then (the host can raise the flag only while the
     * guest traps), until the host writes a non-zero stop word into the
     * contract page. guest-control-deaf never traps again and never looks
     * at the flag: requests to it must time out. */
#if defined(GUEST_CONTROL)
    print("control: polling the interrupt flag\n");
#else
    print("control: not looking at the interrupt flag\n");
#endif
    u32 before = irq_conversations;
    while (*(volatile u32 *)&contract_page.control_stop == 0) {
#if defined(GUEST_CONTROL)
        (void)igloo_portal(CONTRACT_HC_PORTAL_INTERRUPT, (ureg)&irq_flag, 0);
#endif
        for (volatile u32 i = 0; i < CONTRACT_CONTROL_SPIN; i++) {
        }
    }
    print("control: stop word ");
    print_hex(*(volatile u32 *)&contract_page.control_stop);
    print("\n");
    check_eq("control-no-nested-interrupts", irq_conversations - before, 0);
    finish();
}

#else

/* Instructions that share bytes with the hypercall and must not be taken
 * for it (Sources/CPortalShim/qemu.c says what decides). */
#if defined(__i386__) || defined(__x86_64__)
/* "out 0x89, eax" (e7 89): the hypercall's leading byte, another port. Its
 * registers are those of the banner event's first trap: had it been taken,
 * the host's READ_STR would now be in the region, and a page of the pool
 * zeroed for it shows whether it was. */
static u32 lookalike_sent_a_command(void)
{
    struct region *r = &pool[pool_next];
    r->op = 0;
    ureg number = CONTRACT_HC_EVENT;
#if defined(__x86_64__)
    register ureg r10 __asm__("r10") = 0;
    __asm__ volatile("outl %%eax, $0x89"
                     : "+a"(number)
                     : "D"((ureg)CONTRACT_EV_BANNER), "S"((ureg)banner), "d"((ureg)r), "r"(r10)
                     : "memory");
#else
    __asm__ volatile("outl %%eax, $0x89"
                     : "+a"(number)
                     : "b"((ureg)CONTRACT_EV_BANNER), "c"((ureg)banner), "d"((ureg)r), "S"((ureg)0)
                     : "memory");
#endif
    return *(volatile u32 *)&r->op != 0 || number != CONTRACT_HC_EVENT;
}
#elif defined(__arm__)
static u32 lookalike_word __attribute__((aligned(16))) = 0x600dc0deu;

/* The Thumb-2 hypercall's bytes (00 ee 10 07) as an A32 word:
 * "ldreq lr, [r0, -r0, lsl #28]", with Z set and r0 16-byte aligned a load
 * of the word at r0. Taken for the hypercall, it would be skipped and lr
 * would stay 0. */
static u32 a32_lookalike_load(void)
{
    register u32 r0 __asm__("r0") = (u32)&lookalike_word;
    register u32 r2 __asm__("r2");
    __asm__ volatile("mov r1, lr\n\t"
                     "mov lr, #0\n\t"
                     "cmp r0, r0\n\t"
                     ".inst 0x0710ee00\n\t"
                     "mov r2, lr\n\t"
                     "mov lr, r1"
                     : "=r"(r2)
                     : "r"(r0)
                     : "r1", "cc", "memory");
    return r2;
}
#endif

void guest_main(void)
{
    boot();
    ureg v;

    v = event(CONTRACT_EV_BANNER, (ureg)banner);
    check_eq("banner", v, str_len(banner));

    v = event(CONTRACT_EV_BANNER_SHORT, (ureg)banner);
    check_eq("banner-short", v, CONTRACT_BANNER_SHORT_LEN);

    u8 *big = big_buffer + 3;
    for (u32 i = 0; i < CONTRACT_BIG_LEN; i++) {
        big[i] = 0xee;
    }
    v = event(CONTRACT_EV_BIG_WRITE, (ureg)big);
    u32 bad = 0;   /* bytes that differ from the pattern */
    for (u32 i = 0; i < CONTRACT_BIG_LEN; i++) {
        bad += big[i] != contract_big_byte(i);
    }
    check_eq("big-write-data", bad, 0);
    for (u32 i = 0; i < CONTRACT_BIG_LEN; i++) {   /* the expected checksum */
        big[i] = contract_big_byte(i);
    }
    check_eq("big-write-sum", v, contract_fnv1a32(big, CONTRACT_BIG_LEN));

    u32 t_before = served_time;
    v = event(CONTRACT_EV_TIME, 0);
    /* no clock values on the serial port: the output stays deterministic */
    check_value("time", served_time - t_before == 1 && v == (ureg)last_time, 0, 0, 0);

    v = event(CONTRACT_EV_PARTIAL, (ureg)(FAULT_PAGE - CONTRACT_PARTIAL_BYTES));
    check_eq("partial", v, CONTRACT_PARTIAL_BYTES);

    v = event(CONTRACT_EV_FAULT_STR, (ureg)(FAULT_PAGE + 16));
    check_eq("fault-str", v, CONTRACT_RET_READ_FAILED);

    v = event(CONTRACT_EV_WRITE_FAULT, (ureg)(FAULT_PAGE + 32));
    check_eq("write-fault", v, CONTRACT_RET_WRITE_FAILED);

    u32 u_before = served_unsupported;
    v = event(CONTRACT_EV_UNSUPPORTED_OP, 0);
    check_value("unsupported-op",
                v == CONTRACT_RET_WRITE_FAILED && served_unsupported - u_before == 1,
                v, CONTRACT_RET_WRITE_FAILED, 1);

    v = event(CONTRACT_EV_QUEUE_IRQ, (ureg)mailbox);
    check_eq("irq-queue", v, 0);
    check_eq("irq-flag-raised", irq_flag, 1);

    u32 irq_before = irq_conversations;
    v = event(CONTRACT_EV_IRQ_POKE, 0);
    check_eq("irq-conversations", irq_conversations - irq_before, 1);
    check_eq("irq-flag-cleared", irq_flag, 0);
    check_eq("irq-alpha", mailbox[0], CONTRACT_ALPHA_VALUE);
    check_eq("irq-beta", mailbox[1], CONTRACT_BETA_VALUE);
    check_eq("irq-rest", (u64)mailbox[2] | ((u64)mailbox[3] << 32), 0);
    check_eq("irq-poke", v, 2);

    v = event(CONTRACT_EV_END, failed);
    check_eq("end", v, CONTRACT_RET_END);
    check_eq("pid", bad_pid, 0);
    check_eq("user-size", host_oversize, 0);
#if defined(__i386__) || defined(__x86_64__)
    check_eq("lookalike-out-0x89", lookalike_sent_a_command(), 0);
#elif defined(__arm__)
    check_eq("lookalike-a32-ldreq", a32_lookalike_load(), 0x600dc0deu);
#endif
    finish();
}

#endif
