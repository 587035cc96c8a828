/*
 * program.h - the input format of the portal fuzzer (fuzz_portal.c), shared
 * with the seed recorder (record_seeds.c), which writes inputs in it.
 *
 * An input is a little program of guest behaviour:
 *
 *   byte 0        the guest and the plugin configuration (FZ_CFG_*)
 *   then actions  one opcode byte (taken modulo FA_COUNT) and its operands
 *
 * Reading past the end yields zero bytes, so every byte string is a valid
 * program and every program ends. Operands are small selectors rather than
 * raw values wherever that makes a mutation more likely to mean something:
 * an address is usually "region page k of the guest's pool" or "user page
 * + offset", a hypercall number usually one of the numbers the plugin serves.
 *
 * The guest is the harness's mock igloo module (Tests/harness/guest.c): its
 * sparse memory, its region pool and its conversation loop, which the
 * program can drive one trap at a time (FA_CONV_*), or bypass entirely with
 * raw traps (FA_TRAP) and raw memory writes (FA_POKE*).
 */
#ifndef PORTAL_FUZZ_PROGRAM_H
#define PORTAL_FUZZ_PROGRAM_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The longest input libFuzzer is allowed to build (-max_len), and the size
 * the recorder cuts seeds at. */
#define FZ_MAX_LEN 4096

/* ---- byte 0: configuration ---- */
#define FZ_CFG_32BIT      0x01u   /* a 32-bit guest (else 64-bit) */
#define FZ_CFG_BIG_ENDIAN 0x02u
#define FZ_CFG_VCPUS(b)   ((((b) >> 2) & 3u) + 1u)         /* 1..4 vCPUs */
#define FZ_CFG_VARIANT(b) (((b) >> 4) & 7u)                /* plugin arguments */
#define FZ_CFG_SIGN_EXT   0x80u   /* 64-bit guest: numbers with bit 31 sign-extended */
#define FZ_CFG_MAKE(bits32, be, vcpus, variant)                                       \
    (uint8_t)(((bits32) ? FZ_CFG_32BIT : 0u) | ((be) ? FZ_CFG_BIG_ENDIAN : 0u) |     \
              ((((unsigned)(vcpus) - 1u) & 3u) << 2) | (((unsigned)(variant) & 7u) << 4))

/* ---- actions ---- */
enum fz_action {
    FA_TRAP = 0,       /* u8 vcpu, NUM, ARG a1..a4: one raw hypercall */
    FA_TRAP_ODD_CPU,   /* u8 which, NUM, ARG a1..a4: a hypercall from a vCPU index out of range */
    FA_POKE,           /* ARG addr, u8 len, len bytes: raw guest memory write */
    FA_POKE_HEADER,    /* TARGET, OPSEL, u8 pid, ARG addr, ARG size: a region header */
    FA_POKE_OP,        /* TARGET, OPSEL: only the header's op field */
    FA_MAP,            /* ARG addr, u8 pages (1..4) */
    FA_UNMAP,          /* ARG addr, u8 pages (1..4) */
    FA_CONV_START,     /* u8 slot, u8 vcpu, NUM, ARG a1, ARG a2: the module's igloo_portal */
    FA_CONV_STEP,      /* u8 slot, u8 n: n more traps of that conversation (1..16) */
    FA_CONV_RUN,       /* u8 slot: trap until it ends (bounded) */
    FA_CONV_ABANDON,   /* u8 slot: the guest drops it mid-loop; its page goes back to the pool */
    FA_CONV_MIGRATE,   /* u8 slot, u8 vcpu */
    FA_NEST,           /* u8 mode, NUM, ARG a1, ARG a2: handlers start nested conversations */
    FA_INJECT,         /* u8 op, OPSEL code, ARG size, u8 count: the guest answers this instead */
    FA_QUEUE,          /* u8 name: portal_queue_interrupt */
    FA_REGISTER_IRQ,   /* u8 name, u8 step: portal_register_interrupt */
    FA_ATTACH,         /* NUM, u8 step: portal_attach */
    FA_DETACH,         /* NUM: portal_detach */
    FA_SCRIPT,         /* u8 n, n x (OPSEL op, ARG addr, ARG size, u8 data): the script step's commands */
    FA_REINIT,         /* uninit_plugin + init_plugin with live guest conversations */
    FA_BOOT,           /* u8 vcpu: REGISTER_MEM_REGION, ENABLE_PORTAL_INTERRUPT, the init interrupt conversation */
    FA_TIME,           /* u64 ns, u16 step: the guest clock */
    FA_FILL,           /* ARG addr, u16 len: the harness byte pattern */
    FA_JUNK,           /* u8 on: fresh region pages filled with junk, or keeping stale bytes */
    FA_GUEST_OPS,      /* u8 table: the guest module's op numbering (0 standard, 1 older, 2 shuffled, 3 tiny) */
    FA_INIT_ARGS,      /* u8 keys, u8 lie, per key u32 value / u8 choice, [u8 n, n op-table lines]:
                        * uninit_plugin, then init_plugin with arguments the input chooses */
    FA_CONTROL,        /* u8 flags, u16 len, len bytes: a client of the control socket sends them */
    FA_COUNT
};

/* ---- NUM: a hypercall number ---- */
enum fz_num {
    FN_REGISTER = 0,   /* 0xbebebebe */
    FN_ENABLE,         /* 0x7901 */
    FN_INTERRUPT,      /* 0x7902 */
    FN_SYSCALL_ENTER,  /* 0x1338: demo=tour (Swift async handler) or demo=bench */
    FN_SCRIPT,         /* 0x1339: script_step (C) */
    FN_FAIL,           /* 0x133b: fail_step (C) */
    FN_GARBAGE,        /* 0x133c: garbage_step (C) */
    FN_WORD,           /* 0x6901: word_step (C) */
    FN_CHUNKS,         /* 0x6902: chunk_step (C) */
    FN_REENTRANT,      /* 0x6903: reentrant_step (C): calls the C API from inside a step */
    FN_FINISH,         /* 0x6904: finish_step (C) */
    FN_INIT_MODULE,    /* 0x6408400d: nothing attached at first */
    FN_MODULE_BASE,    /* 0x6408400c: a plain hypercall */
    FN_HYPERFS,        /* 0x51ec3692 */
    FN_TRAMP,          /* 0x7903: copy_step (C): READ, a larger region registered, WRITE of the answer's bytes */
    FN_NAMED_COUNT,
    FN_U32 = FN_NAMED_COUNT,  /* u32 follows */
    FN_U64,            /* u64 follows */
    FN_SX,             /* u8 k: named number k with the high half all ones */
    FN_HI,             /* u8 k, u32 hi: named number k with garbage in the high half */
    FN_SELECTORS       /* selector bytes >= this repeat the served numbers 3..10 */
};

/* The value of each named NUM, in the order of enum fz_num. */
static const uint32_t fz_named_numbers[FN_NAMED_COUNT] = {
    0xbebebebeu, 0x7901u, 0x7902u, 0x1338u, 0x1339u, 0x133bu, 0x133cu, 0x6901u,
    0x6902u, 0x6903u, 0x6904u, 0x6408400du, 0x6408400cu, 0x51ec3692u, 0x7903u,
};

/* ---- ARG: a register value or an address ---- */
enum fz_arg {
    FG_ZERO = 0,
    FG_U8,             /* u8 */
    FG_U16,            /* u16 */
    FG_U32,            /* u32 */
    FG_U64,            /* u64 */
    FG_POOL,           /* u8 k: region k of the guest's pool (pool_base + k * 8 KiB) */
    FG_CONV,           /* u8 slot: the region of the guest conversation in that slot */
    FG_USER,           /* u16 off: USER_BASE + off */
    FG_KDATA,          /* u16 off: kernel data + off */
    FG_FLAG,           /* the guest's interrupt flag */
    FG_RESP,           /* u8 k: 0xf0000000 + k % 10 (codes 7..9 are invalid) */
    FG_RESP_SX,        /* u8 k: the same, sign-extended to 64 bits */
    FG_RESP_HI,        /* u8 k, u32 hi: the same with garbage in the high half */
    FG_EVENT,          /* u8 k: a tour event id (0x7e570001.., 0x7e570010, and unknown ones) */
    FG_SIZE,           /* u8 k: an interesting size (0, 1, 4072, 1 MiB, 1 MiB + 1, ~0, ...) */
    FG_MAPPED,         /* u8 k: the k-th page mapped by FA_MAP */
    FG_LAST_REGION,    /* the region of the last conversation trap */
    FG_ONES,           /* all ones */
    FG_KBOUND,         /* u8 k: around the user/kernel boundary */
    FG_BENCH,          /* u8 k: a demo=bench workload selector (0xbe0c0001..) */
    FG_COUNT           /* selector bytes >= this repeat FG_POOL, FG_USER, FG_RESP, FG_EVENT */
};

/* ---- TARGET of FA_POKE_HEADER / FA_POKE_OP ----
 * u8 t: t < 0x80: the region of conversation slot t % FZ_SLOTS (or the last
 * region when that slot is empty); t >= 0x80: an ARG address follows. */
#define FZ_TARGET_ADDR 0x80u

/* ---- OPSEL: an op or response code ----
 * u8 v: v < 64: v; 64..79: 0xf0000000 + (v - 64); 80..95: 0xffffffff - (v - 80);
 * 96..255: a u32 follows. */
#define FZ_OPSEL_RESP 64u
#define FZ_OPSEL_NEG  80u
#define FZ_OPSEL_U32  96u

/* ---- names of interrupts (FA_QUEUE, FA_REGISTER_IRQ) ---- */
#define FZ_NAME_COUNT 8
static const char *const fz_names[FZ_NAME_COUNT] = {
    "alpha", "beta",           /* demo=tour's Swift handlers */
    "c_write", "c_budget", "c_fail", "c_garbage", "c_script",
    "no-such-interrupt",
};

/* ---- step functions (FA_ATTACH, FA_REGISTER_IRQ) ---- */
enum fz_step {
    FS_SCRIPT = 0, FS_FAIL, FS_GARBAGE, FS_WORD, FS_CHUNKS, FS_REENTRANT, FS_FINISH,
    FS_IRQ_WRITE, FS_IRQ_BUDGET, FS_COPY, FS_COUNT
};

#define FZ_SLOTS 8             /* guest conversations the program can hold */
#define FZ_SCRIPT_MAX 8        /* commands of the script step */
#define FZ_POOL_STRIDE 8192u   /* the harness pool: one region page + one guard page */

/* ---- an encoder, for the recorder and the scripted seeds ---- */
typedef struct fz_out {
    uint8_t bytes[FZ_MAX_LEN];
    size_t len;
    int full;                  /* an emit did not fit: the program was cut */
} fz_out;

static inline void fz_put(fz_out *o, const void *p, size_t n)
{
    if (o->full || o->len + n > sizeof o->bytes) {
        o->full = 1;
        return;
    }
    memcpy(o->bytes + o->len, p, n);
    o->len += n;
}
static inline void fz_u8(fz_out *o, uint8_t v) { fz_put(o, &v, 1); }
static inline void fz_u16(fz_out *o, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    fz_put(o, b, 2);
}
static inline void fz_u32(fz_out *o, uint32_t v)
{
    uint8_t b[4];
    for (int i = 0; i < 4; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    fz_put(o, b, 4);
}
static inline void fz_u64(fz_out *o, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    fz_put(o, b, 8);
}

#endif /* PORTAL_FUZZ_PROGRAM_H */
