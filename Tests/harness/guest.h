/*
 * guest.h - the mock guest of the portal test harness.
 *
 * It plays the part of the igloo kernel module (PROTOCOL.md §4-§6) over a
 * sparse, fake guest memory:
 *
 *  - memory is a set of 4 KiB pages (a hash map); anything not mapped is a
 *    hole, and every access through a hole fails the way a page fault would;
 *  - the word width (32/64) and byte order are configurable; addresses are
 *    masked to the word width;
 *  - igloo_portal() is the module's conversation loop: interrupt-flag check,
 *    a fresh region page from a pool (header zeroed, payload stale), a trap
 *    per round trip, and the op handlers (READ, WRITE, READ_STR,
 *    READ_PTR_ARRAY, READ_TIME, KALLSYMS_LOOKUP, and over generated fixtures
 *    OSI_PROC, OSI_PROC_ALL, OSI_MAPPINGS, READ_FDS, OSI_PROC_MEM, and
 *    VFS_OPEN/READ/CLOSE over one file; everything else WRITE_FAIL);
 *  - a conversation can also be driven one trap at a time (guest_conv_step),
 *    so a single-threaded test can interleave many vCPUs deterministically;
 *  - a nest hook lets a handler start another conversation before it serves
 *    its command, like a kernel handler that calls igloo_portal itself;
 *  - every trap is recorded (what the host wrote into the region header, the
 *    first payload bytes, how many memory writes it made), so tests can assert
 *    exact bytes.
 *
 * The guest is thread-safe: one pthread per vCPU may run conversations at once.
 */
#ifndef HARNESS_GUEST_H
#define HARNESS_GUEST_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "portal/panda.h"

#define GUEST_PAGE_SIZE   4096u
#define REGION_HEADER     24u      /* op u32, pid u32, addr u64, size u64 */
#define GUEST_MAX_VCPUS   16
#define TRAP_PAYLOAD_KEEP 64       /* payload bytes kept in each trap record */

/* Hypercall numbers the guest makes (PROTOCOL.md §2). */
#define HC_REGISTER_MEM_REGION     0xbebebebeu
#define HC_ENABLE_PORTAL_INTERRUPT 0x7901u
#define HC_PORTAL_INTERRUPT        0x7902u
#define HC_SYSCALL_ENTER           0x1338u
#define HC_SYSCALL_RETURN          0x1339u
#define HC_MODULE_BASE             0x6408400cu  /* a plain, non-portal hypercall */

/* Response codes (guest -> host). */
#define RESP_NONE         0xf0000000u
#define RESP_READ_OK      0xf0000001u
#define RESP_READ_FAIL    0xf0000002u
#define RESP_READ_PARTIAL 0xf0000003u
#define RESP_WRITE_OK     0xf0000004u
#define RESP_WRITE_FAIL   0xf0000005u
#define RESP_READ_NUM     0xf0000006u
#define RESP_MAX          0xf0000007u

/* What the guest does for an op number: the handler kinds it implements. */
typedef enum guest_handler {
    GH_UNIMPLEMENTED = 0,   /* answered WRITE_FAIL */
    GH_READ,
    GH_WRITE,
    GH_READ_STR,
    GH_READ_PTR_ARRAY,
    GH_READ_TIME,
    GH_KALLSYMS_LOOKUP,
    GH_OSI_PROC,
    GH_OSI_PROC_ALL,
    GH_OSI_MAPPINGS,
    GH_READ_FDS,
    GH_OSI_PROC_MEM,
    GH_VFS_OPEN,
    GH_VFS_READ,
    GH_VFS_CLOSE,
    GH_COPY_BUF_GUEST,
} guest_handler;

#define GUEST_MAX_OPS 256

typedef struct guest guest;

/* The emulator's vCPU. panda.h leaves it opaque to the plugin; the harness
 * defines it here because the guest owns its vCPUs. */
struct CPUState {
    int index;
    guest *g;
    /* Set while this vCPU is inside a hypercall callback: the plugin may only
     * touch guest memory through a CPUState that is trapping, on the thread
     * that trapped (the header's rule, and QEMU's). */
    bool in_trap;
    pthread_t trap_thread;
    uint64_t trap_region;       /* region of the trap in progress (0: none) */
    /* Counters of the trap in progress (reset at each trap). */
    int reads, writes, failed_ops;
    int region_writes;          /* writes that touched the trap's region */
    int region_write_len;       /* length of the last such write */
    int region_write_off;       /* its offset into the region */
};

typedef struct guest_config {
    unsigned word_bits;     /* 32 or 64 (default 64) */
    bool big_endian;
    unsigned vcpus;         /* default 1 */
    uint32_t region_size;   /* payload bytes of a region (default 4072) */
    uint64_t kernel_base;   /* addresses >= this are kernel addresses */
    uint64_t pool_base;     /* where region pages come from (kernel space) */
    uint64_t flag_addr;     /* the interrupt flag (kernel space) */
} guest_config;

/* One trap, as the guest saw it. Header fields are decoded in guest order
 * and also kept raw, as they were in guest memory after the callback. */
typedef struct trap_record {
    uint64_t seq;               /* 0, 1, 2 ... over the guest's life */
    uint64_t conv_id;           /* the guest conversation (0 = plain hypercall) */
    int vcpu;
    int depth;                  /* 0 = outermost conversation, 1 = nested ... */
    uint64_t number;
    uint64_t args[4];
    bool handled;               /* the callback returned true */
    bool set_return;
    uint64_t return_value;      /* as the plugin set it */
    uint64_t ret_reg;           /* the return register after the trap */
    uint64_t region;            /* arg3 of a conversation trap, else 0 */
    uint8_t raw_header[REGION_HEADER];
    uint32_t op, pid;
    uint64_t addr, size;
    uint8_t payload[TRAP_PAYLOAD_KEEP];
    int reads, writes, failed_ops;
    int region_writes, region_write_len, region_write_off;
} trap_record;

/* A guest conversation (one igloo_portal call), resumable one trap at a time. */
typedef struct gconv gconv;

/* Called by the op dispatch before a handler runs. Return true and fill
 * *num, *a1, *a2 to make the handler start a nested conversation (on a new
 * page) first, as a kernel handler calling igloo_portal would. Runs on the
 * vCPU's thread. `depth` is the parent's nesting depth. */
typedef bool (*guest_nest_fn)(void *userdata, int vcpu, int depth, uint32_t op,
                              uint64_t *num, uint64_t *a1, uint64_t *a2);

/* ---- life ---- */
guest *guest_new(const guest_config *config);
void guest_free(guest *g);
const guest_config *guest_get_config(const guest *g);
uint64_t guest_mask(const guest *g);   /* 0xffffffff or all ones */

/* ---- memory ---- */
void guest_map(guest *g, uint64_t addr, uint64_t len);     /* zero-filled */
void guest_unmap(guest *g, uint64_t addr, uint64_t len);
/* Direct access for tests (no vCPU rules): return bytes transferred before
 * the first hole (== len when all were mapped). */
uint64_t guest_peek(guest *g, uint64_t addr, void *buf, uint64_t len);
uint64_t guest_poke(guest *g, uint64_t addr, const void *buf, uint64_t len);
/* A deterministic byte pattern: pattern_byte(addr) for every mapped byte. */
uint8_t pattern_byte(uint64_t addr);
void guest_fill_pattern(guest *g, uint64_t addr, uint64_t len);
/* Integers in guest byte order. */
void guest_encode(const guest *g, uint8_t *out, uint64_t value, int bytes);
uint64_t guest_decode(const guest *g, const uint8_t *in, int bytes);
bool guest_put_u64(guest *g, uint64_t addr, uint64_t value);
uint64_t guest_get_u64(guest *g, uint64_t addr);

/* ---- the module's behaviour ---- */
/* Op table: op i+1 runs the handler named names[i] (an op name of
 * PROTOCOL.md §2: "READ", "WRITE", ...; unknown names are unimplemented);
 * MAX = n + 1. guest_new installs the standard table (MAX 56). */
void guest_set_ops(guest *g, const char *const *names, int n);
void guest_set_ops_standard(guest *g);
extern const char *const standard_op_names[];   /* index 0 = op 1 */
extern const int standard_op_count;             /* 55 */

void guest_set_time(guest *g, uint64_t ns, uint64_t step_per_read);
void guest_add_symbol(guest *g, const char *name, uint64_t address);
void guest_set_nest_hook(guest *g, guest_nest_fn fn, void *userdata);
/* The OSI fixtures: `processes` user processes (pid 100 + i; OSI_PROC
 * answers for each, the current task being the first), `mappings` VMAs of
 * every task, and open fds `fds` (increasing, gaps allowed; at most
 * GUEST_MAX_FDS) whose paths are guest_fd_path(); the cwd is fd -100. */
#define GUEST_MAX_FDS 512
void guest_set_osi(guest *g, int processes, int mappings, const int32_t *fds, int nfds);
/* The generated names, for expected values. */
void guest_osi_process_name(int index, char name[16]);
const char *guest_osi_mapping_name(int index);
void guest_fd_path(int32_t fd, char path[32]);
/* The VFS ops' file: byte i is (i * 7) & 0xff. Reads of the EINVAL file
 * answer -EINVAL (a /proc file on 6.x); every other path is -ENOENT. */
#define GUEST_VFS_FILE "/etc/fixture"
#define GUEST_VFS_FILE_SIZE 5000u
#define GUEST_VFS_EINVAL "/proc/einval"
/* COPY_BUF_GUEST's buffers: the first at pool_base + GUEST_COPY_BUF_OFFSET,
 * each after the previous one's guard page; at most GUEST_COPY_BUF_MAX bytes
 * each (more answers WRITE_FAIL). */
#define GUEST_COPY_BUF_OFFSET 0x10000000ull
#define GUEST_COPY_BUF_MAX (1ull << 20)
/* Fault injection: the next `count` commands `op` (any op if op == 0) are
 * answered with header.op = code and nothing else changed (count < 0:
 * forever, 0: off). */
void guest_inject(guest *g, uint32_t op, uint32_t code, int count);
/* The same, also setting header.size (a guest that lies about its answer). */
void guest_inject_answer(guest *g, uint32_t op, uint32_t code, uint64_t size, int count);
/* false: region pages keep the previous conversation's bytes instead of
 * being filled with the junk byte. */
void guest_set_junk_fill(guest *g, bool fill);
#define GUEST_JUNK 0xEEu
/* 64-bit guests only: pass numbers with bit 31 set sign-extended (as a
 * MIPS64 guest does). */
void guest_set_sign_extend(guest *g, bool on);

/* ---- hypercalls and conversations ---- */
/* One plain trap (no region): returns the return register. */
uint64_t guest_hypercall(guest *g, int vcpu, uint64_t num, uint64_t a1, uint64_t a2,
                         uint64_t a3, uint64_t a4, bool *handled);
/* Module init: REGISTER_MEM_REGION(region_size), ENABLE_PORTAL_INTERRUPT(flag),
 * then one PORTAL_INTERRUPT conversation with arg1 = 1. */
void guest_boot(guest *g, int vcpu);
void guest_register_region(guest *g, int vcpu);
void guest_enable_interrupts(guest *g, int vcpu);

/* A whole conversation (the module's igloo_portal): returns the return
 * register of its last trap. */
uint64_t igloo_portal(guest *g, int vcpu, uint64_t num, uint64_t a1, uint64_t a2);

/* The same, one trap at a time. guest_conv_step makes exactly one trap (of
 * the innermost live conversation: an interrupt conversation that runs
 * first, or a nested one) and returns true once `c` has ended. */
gconv *guest_conv_start(guest *g, int vcpu, uint64_t num, uint64_t a1, uint64_t a2);
bool guest_conv_step(gconv *c);
uint64_t guest_conv_result(const gconv *c);
uint64_t guest_conv_id(const gconv *c);       /* conv_id of its trap records */
uint64_t guest_conv_region(const gconv *c);   /* its page (0 before it has one) */
void guest_conv_set_vcpu(gconv *c, int vcpu); /* migrate to another vCPU */
/* Drops a conversation without finishing it (its page goes back to the pool). */
void guest_conv_free(gconv *c);

/* ---- the emulator's memory calls (panda_virtual_memory_read/write) ----
 * 0 when all `len` bytes were transferred, -1 otherwise. Refused (-1, and
 * counted) unless `cpu` is inside a trap on the calling thread. */
int guest_cpu_read(CPUState *cpu, uint64_t addr, uint8_t *buf, int len);
int guest_cpu_write(CPUState *cpu, uint64_t addr, const uint8_t *buf, int len);

/* ---- what happened ---- */
/* Copies of the trap records (caller frees). */
trap_record *guest_traps(guest *g, size_t *count);
void guest_set_recording(guest *g, bool on);
/* Protocol violations the guest noticed (e.g. a user READ larger than the
 * region, a write into another conversation's page). */
int guest_violations(guest *g, char *first, size_t first_len);
int guest_offtrap_accesses(guest *g);  /* memory calls outside a trap (refused) */

#endif /* HARNESS_GUEST_H */
