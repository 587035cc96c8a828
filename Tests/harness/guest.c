/*
 * guest.c - the mock guest: sparse memory, the igloo module's portal loop and
 * its op handlers. See guest.h for the model and PROTOCOL.md §4-§6 for the
 * behaviour being imitated; the loop's decision after a trap is
 * guest_module.h's, shared with the engine benchmark's guest.
 */
#include "guest.h"
#include "emulator.h"
#include "guest_module.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- types -- */

typedef struct page {
    uint64_t number;            /* address / GUEST_PAGE_SIZE */
    struct page *next;          /* hash chain */
    uint8_t data[GUEST_PAGE_SIZE];
} page;

#define PAGE_BUCKETS 1024
#define MAX_SYMBOLS 32
#define POOL_MAX 4096
#define GUEST_MAX_TRAPS 100000   /* per conversation */

enum conv_state { CS_START, CS_PRE_INTERRUPT, CS_TRAP, CS_NESTED, CS_DONE };

struct gconv {
    guest *g;
    int vcpu;
    int depth;
    uint64_t id;
    uint64_t num, a1, a2;
    enum conv_state state;
    uint64_t region;
    uint64_t arg4;              /* header.op after the previous round trip */
    uint64_t ret;               /* return register of the last trap */
    int traps;
    uint32_t pending_op;        /* op whose handler waits for `child` */
    gconv *child;               /* interrupt conversation or nested one */
};

struct guest {
    guest_config cfg;
    uint64_t mask;
    uint32_t region_pages;      /* pages a region spans (header + payload) */

    /* One lock for memory, the pool, the trap log and the counters: the
     * harness is about correctness, not speed. Never held while the plugin's
     * callback runs (the plugin calls back into memory). */
    pthread_mutex_t lock;
    page *buckets[PAGE_BUCKETS];

    /* Region pool: a LIFO free list, so a freed page is the next one handed
     * out and region addresses are reused as soon as possible. Each region is
     * followed by an unmapped guard page. */
    uint64_t pool_next;
    uint64_t pool_free[POOL_MAX];
    int pool_nfree;
    bool junk_fill;

    guest_handler handlers[GUEST_MAX_OPS];
    uint32_t op_max;

    uint64_t time_ns, time_step;
    struct { char name[64]; uint64_t addr; } symbols[MAX_SYMBOLS];
    int nsymbols;

    guest_nest_fn nest;
    void *nest_userdata;

    /* The OSI fixtures (guest_set_osi): generated from counts and fd numbers. */
    int nprocesses, nmappings, nfds;
    int32_t fds[GUEST_MAX_FDS];
    uint64_t vfs_position;      /* of the one handle VFS_OPEN hands out */
    uint64_t copy_next;         /* where COPY_BUF_GUEST's next buffer goes */

    uint32_t inject_op, inject_code;
    int inject_count;
    bool inject_sets_size;
    uint64_t inject_size;
    bool sign_extend;

    CPUState cpus[GUEST_MAX_VCPUS];

    bool recording;
    trap_record *traps;
    size_t ntraps, traps_cap;
    uint64_t trap_seq;
    uint64_t conv_seq;

    int violations;
    char first_violation[256];
    int offtrap;
};

/* --------------------------------------------------------------- helpers -- */

static void violation(guest *g, const char *fmt, ...)
{
    /* caller holds g->lock */
    if (g->violations++ == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(g->first_violation, sizeof g->first_violation, fmt, ap);
        va_end(ap);
    }
}

uint64_t guest_mask(const guest *g) { return g->mask; }
const guest_config *guest_get_config(const guest *g) { return &g->cfg; }

void guest_encode(const guest *g, uint8_t *out, uint64_t value, int bytes)
{
    for (int i = 0; i < bytes; i++) {
        int shift = g->cfg.big_endian ? 8 * (bytes - 1 - i) : 8 * i;
        out[i] = (uint8_t)(value >> shift);
    }
}

uint64_t guest_decode(const guest *g, const uint8_t *in, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) {
        int shift = g->cfg.big_endian ? 8 * (bytes - 1 - i) : 8 * i;
        v |= (uint64_t)in[i] << shift;
    }
    return v;
}

uint8_t pattern_byte(uint64_t addr)
{
    /* Never 0, so a pattern never looks like a string terminator. */
    uint8_t b = (uint8_t)((addr * 31u) ^ (addr >> 8) ^ (addr >> 16));
    return b ? b : 0x5a;
}

/* ---------------------------------------------------------------- memory -- */

static unsigned bucket_of(uint64_t number)
{
    return (unsigned)((number * 0x9E3779B97F4A7C15ull) >> 54) % PAGE_BUCKETS;
}

static page *find_page(guest *g, uint64_t number)
{
    for (page *p = g->buckets[bucket_of(number)]; p; p = p->next)
        if (p->number == number)
            return p;
    return NULL;
}

static void map_locked(guest *g, uint64_t addr, uint64_t len)
{
    if (len == 0)
        return;
    uint64_t first = (addr & g->mask) / GUEST_PAGE_SIZE;
    uint64_t last = ((addr + len - 1) & g->mask) / GUEST_PAGE_SIZE;
    for (uint64_t n = first;; n = (n + 1) & (g->mask / GUEST_PAGE_SIZE)) {
        if (!find_page(g, n)) {
            page *p = calloc(1, sizeof *p);
            if (!p) {
                perror("calloc");
                abort();
            }
            p->number = n;
            unsigned b = bucket_of(n);
            p->next = g->buckets[b];
            g->buckets[b] = p;
        }
        if (n == last)
            break;
    }
}

static void unmap_locked(guest *g, uint64_t addr, uint64_t len)
{
    if (len == 0)
        return;
    uint64_t first = (addr & g->mask) / GUEST_PAGE_SIZE;
    uint64_t last = ((addr + len - 1) & g->mask) / GUEST_PAGE_SIZE;
    for (uint64_t n = first;; n = (n + 1) & (g->mask / GUEST_PAGE_SIZE)) {
        page **pp = &g->buckets[bucket_of(n)];
        while (*pp) {
            if ((*pp)->number == n) {
                page *dead = *pp;
                *pp = dead->next;
                free(dead);
                break;
            }
            pp = &(*pp)->next;
        }
        if (n == last)
            break;
    }
}

/* Copies page by page; stops at the first hole. Returns bytes transferred. */
static uint64_t access_locked(guest *g, uint64_t addr, uint8_t *buf, const uint8_t *src,
                              uint64_t len)
{
    uint64_t done = 0;
    while (done < len) {
        uint64_t a = (addr + done) & g->mask;
        page *p = find_page(g, a / GUEST_PAGE_SIZE);
        if (!p)
            break;
        uint64_t off = a % GUEST_PAGE_SIZE;
        uint64_t n = GUEST_PAGE_SIZE - off;
        if (n > len - done)
            n = len - done;
        if (buf)
            memcpy(buf + done, p->data + off, n);
        else
            memcpy(p->data + off, src + done, n);
        done += n;
    }
    return done;
}

static uint64_t read_locked(guest *g, uint64_t addr, void *buf, uint64_t len)
{
    return access_locked(g, addr, buf, NULL, len);
}

static uint64_t write_locked(guest *g, uint64_t addr, const void *buf, uint64_t len)
{
    return access_locked(g, addr, NULL, buf, len);
}

static bool all_mapped_locked(guest *g, uint64_t addr, uint64_t len)
{
    for (uint64_t off = 0; off < len;) {
        uint64_t a = (addr + off) & g->mask;
        if (!find_page(g, a / GUEST_PAGE_SIZE))
            return false;
        off += GUEST_PAGE_SIZE - a % GUEST_PAGE_SIZE;
    }
    return true;
}

void guest_map(guest *g, uint64_t addr, uint64_t len)
{
    pthread_mutex_lock(&g->lock);
    map_locked(g, addr, len);
    pthread_mutex_unlock(&g->lock);
}

void guest_unmap(guest *g, uint64_t addr, uint64_t len)
{
    pthread_mutex_lock(&g->lock);
    unmap_locked(g, addr, len);
    pthread_mutex_unlock(&g->lock);
}

uint64_t guest_peek(guest *g, uint64_t addr, void *buf, uint64_t len)
{
    pthread_mutex_lock(&g->lock);
    uint64_t n = read_locked(g, addr, buf, len);
    pthread_mutex_unlock(&g->lock);
    return n;
}

uint64_t guest_poke(guest *g, uint64_t addr, const void *buf, uint64_t len)
{
    pthread_mutex_lock(&g->lock);
    uint64_t n = write_locked(g, addr, buf, len);
    pthread_mutex_unlock(&g->lock);
    return n;
}

void guest_fill_pattern(guest *g, uint64_t addr, uint64_t len)
{
    pthread_mutex_lock(&g->lock);
    for (uint64_t i = 0; i < len; i++) {
        uint64_t a = (addr + i) & g->mask;
        uint8_t b = pattern_byte(a);
        write_locked(g, a, &b, 1);   /* skips holes */
    }
    pthread_mutex_unlock(&g->lock);
}

bool guest_put_u64(guest *g, uint64_t addr, uint64_t value)
{
    uint8_t b[8];
    guest_encode(g, b, value, 8);
    return guest_poke(g, addr, b, 8) == 8;
}

uint64_t guest_get_u64(guest *g, uint64_t addr)
{
    uint8_t b[8] = {0};
    guest_peek(g, addr, b, 8);
    return guest_decode(g, b, 8);
}

/* The emulator side of panda_virtual_memory_read/write. */
static int cpu_access(CPUState *cpu, uint64_t addr, uint8_t *rbuf, const uint8_t *wbuf, int len)
{
    guest *g = cpu->g;
    int r = 0;
    pthread_mutex_lock(&g->lock);
    if (!cpu->in_trap || !pthread_equal(cpu->trap_thread, pthread_self())) {
        /* QEMU only lets a plugin touch memory from a vCPU callback; the
         * harness holds the plugin to that. */
        g->offtrap++;
        pthread_mutex_unlock(&g->lock);
        return -1;
    }
    if (len < 0) {
        violation(g, "memory call with negative length %d", len);
        pthread_mutex_unlock(&g->lock);
        return -1;
    }
    uint64_t a = addr & g->mask;
    if (rbuf) {
        cpu->reads++;
        if (read_locked(g, a, rbuf, (uint64_t)len) != (uint64_t)len)
            r = -1;
    } else {
        cpu->writes++;
        /* Writes into the region pool must stay inside this trap's region. */
        uint64_t pool_lo = g->cfg.pool_base, pool_hi = g->pool_next;
        uint64_t reg_lo = cpu->trap_region;
        uint64_t reg_hi = reg_lo + REGION_HEADER + g->cfg.region_size;
        uint64_t end = a + (uint64_t)len;
        if (len > 0 && a < pool_hi && end > pool_lo) {
            if (reg_lo == 0 || a < reg_lo || end > reg_hi)
                violation(g, "vCPU %d wrote %d bytes at %#llx, outside its region %#llx (+%u)",
                          cpu->index, len, (unsigned long long)a,
                          (unsigned long long)reg_lo, REGION_HEADER + g->cfg.region_size);
        }
        if (len > 0 && reg_lo && a < reg_hi && end > reg_lo) {
            cpu->region_writes++;
            cpu->region_write_len = len;
            cpu->region_write_off = (int)(a - reg_lo);
        }
        if (write_locked(g, a, wbuf, (uint64_t)len) != (uint64_t)len)
            r = -1;
    }
    if (r)
        cpu->failed_ops++;
    pthread_mutex_unlock(&g->lock);
    return r;
}

int guest_cpu_read(CPUState *cpu, uint64_t addr, uint8_t *buf, int len)
{
    return cpu_access(cpu, addr, buf, NULL, len);
}

int guest_cpu_write(CPUState *cpu, uint64_t addr, const uint8_t *buf, int len)
{
    return cpu_access(cpu, addr, NULL, buf, len);
}

/* --------------------------------------------------------------- op table -- */

const char *const standard_op_names[] = {
    "READ", "WRITE", "READ_STR", "READ_PTR_ARRAY", "DUMP", "EXEC", "OSI_PROC",
    "OSI_PROC_HANDLES", "OSI_PROC_ALL", "OSI_MAPPINGS", "OSI_PROC_MEM",
    "OSI_PROC_EXE", "OSI_PROC_PTREGS", "READ_PROCARGS", "READ_PROCENV",
    "READ_FDS", "READ_TIME", "READ_FILE", "WRITE_FILE", "REGISTER_UPROBE",
    "UNREGISTER_UPROBE", "REGISTER_KPROBE", "UNREGISTER_KPROBE",
    "REGISTER_SYSCALL_HOOK", "UNREGISTER_SYSCALL_HOOK",
    "REGISTER_PORTALCALL_MAGIC", "SET_PORTALCALL_FASTPATH",
    "REGISTER_SIGNAL_HOOK", "UNREGISTER_SIGNAL_HOOK", "REGISTER_EXIT_HOOK",
    "UNREGISTER_EXIT_HOOK", "FFI_EXEC", "KALLSYMS_LOOKUP", "TRAMP_GENERATE",
    "HYPERFS_ADD_HYPERFILE", "REGISTER_NETDEV", "LOOKUP_NETDEV",
    "SET_NETDEV_STATE", "GET_NETDEV_STATE", "COPY_BUF_GUEST",
    "PROCFS_CREATE_FILE", "PROCFS_CREATE_OR_LOOKUP_DIR", "SYSFS_CREATE_FILE",
    "SYSFS_CREATE_OR_LOOKUP_DIR", "DEVFS_CREATE_DEVICE",
    "DEVFS_CREATE_OR_LOOKUP_DIR", "SYSCTL_CREATE_FILE", "ANONFS_CREATE_FILE",
    "SOCKFS_CREATE_SOCKET", "MTD_NUKE", "MTD_CREATE", "SET_SCOPE_ENABLED",
    "VFS_OPEN", "VFS_READ", "VFS_CLOSE",
};
const int standard_op_count = (int)(sizeof standard_op_names / sizeof standard_op_names[0]);

static guest_handler handler_named(const char *name)
{
    static const struct { const char *name; guest_handler h; } known[] = {
        {"READ", GH_READ}, {"WRITE", GH_WRITE}, {"READ_STR", GH_READ_STR},
        {"READ_PTR_ARRAY", GH_READ_PTR_ARRAY}, {"READ_TIME", GH_READ_TIME},
        {"KALLSYMS_LOOKUP", GH_KALLSYMS_LOOKUP}, {"OSI_PROC", GH_OSI_PROC},
        {"OSI_PROC_ALL", GH_OSI_PROC_ALL}, {"OSI_MAPPINGS", GH_OSI_MAPPINGS},
        {"READ_FDS", GH_READ_FDS}, {"OSI_PROC_MEM", GH_OSI_PROC_MEM},
        {"VFS_OPEN", GH_VFS_OPEN}, {"VFS_READ", GH_VFS_READ}, {"VFS_CLOSE", GH_VFS_CLOSE},
        {"COPY_BUF_GUEST", GH_COPY_BUF_GUEST},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(known[i].name, name) == 0)
            return known[i].h;
    return GH_UNIMPLEMENTED;
}

void guest_set_ops(guest *g, const char *const *names, int n)
{
    if (n > GUEST_MAX_OPS - 2)
        n = GUEST_MAX_OPS - 2;
    memset(g->handlers, 0, sizeof g->handlers);
    for (int i = 0; i < n; i++) {
        g->handlers[i + 1] = handler_named(names[i]);
    }
    g->op_max = (uint32_t)n + 1;
}

void guest_set_ops_standard(guest *g)
{
    guest_set_ops(g, standard_op_names, standard_op_count);
}

/* ------------------------------------------------------------ life, knobs -- */

guest *guest_new(const guest_config *config)
{
    guest *g = calloc(1, sizeof *g);
    if (!g)
        abort();
    g->cfg = *config;
    if (g->cfg.word_bits != 32)
        g->cfg.word_bits = 64;
    if (g->cfg.vcpus == 0)
        g->cfg.vcpus = 1;
    if (g->cfg.vcpus > GUEST_MAX_VCPUS)
        g->cfg.vcpus = GUEST_MAX_VCPUS;
    if (g->cfg.region_size == 0)
        g->cfg.region_size = GUEST_PAGE_SIZE - REGION_HEADER;
    bool w64 = g->cfg.word_bits == 64;
    g->mask = w64 ? ~0ull : 0xffffffffull;
    if (!g->cfg.kernel_base)
        g->cfg.kernel_base = w64 ? 0xffff800000000000ull : 0xc0000000ull;
    if (!g->cfg.pool_base)
        g->cfg.pool_base = w64 ? 0xffff888000100000ull : 0xc1000000ull;
    if (!g->cfg.flag_addr)
        g->cfg.flag_addr = w64 ? 0xffff888000010008ull : 0xc0010008ull;
    g->region_pages = (REGION_HEADER + g->cfg.region_size + GUEST_PAGE_SIZE - 1) / GUEST_PAGE_SIZE;
    g->pool_next = g->cfg.pool_base;
    g->copy_next = g->cfg.pool_base + GUEST_COPY_BUF_OFFSET;
    g->junk_fill = true;
    g->recording = true;
    pthread_mutex_init(&g->lock, NULL);
    for (unsigned i = 0; i < GUEST_MAX_VCPUS; i++) {
        g->cpus[i].index = (int)i;
        g->cpus[i].g = g;
    }
    guest_set_ops_standard(g);
    /* The flag lives on its own kernel page, zero, between sentinel bytes
     * so a write of the wrong width or place shows. */
    map_locked(g, g->cfg.flag_addr, 8);
    uint8_t sentinel[GUEST_PAGE_SIZE];
    memset(sentinel, 0xCC, sizeof sentinel);
    write_locked(g, g->cfg.flag_addr & ~(uint64_t)(GUEST_PAGE_SIZE - 1), sentinel, GUEST_PAGE_SIZE);
    uint8_t zero[8] = {0};
    write_locked(g, g->cfg.flag_addr, zero, 8);
    return g;
}

void guest_free(guest *g)
{
    if (!g)
        return;
    for (int b = 0; b < PAGE_BUCKETS; b++) {
        page *p = g->buckets[b];
        while (p) {
            page *next = p->next;
            free(p);
            p = next;
        }
    }
    free(g->traps);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

void guest_set_time(guest *g, uint64_t ns, uint64_t step)
{
    pthread_mutex_lock(&g->lock);
    g->time_ns = ns;
    g->time_step = step;
    pthread_mutex_unlock(&g->lock);
}

void guest_add_symbol(guest *g, const char *name, uint64_t address)
{
    if (g->nsymbols >= MAX_SYMBOLS)
        return;
    snprintf(g->symbols[g->nsymbols].name, sizeof g->symbols[0].name, "%s", name);
    g->symbols[g->nsymbols].addr = address;
    g->nsymbols++;
}

void guest_set_osi(guest *g, int processes, int mappings, const int32_t *fds, int nfds)
{
    pthread_mutex_lock(&g->lock);
    g->nprocesses = processes;
    g->nmappings = mappings;
    g->nfds = nfds < GUEST_MAX_FDS ? nfds : GUEST_MAX_FDS;
    for (int i = 0; i < g->nfds; i++)
        g->fds[i] = fds[i];
    pthread_mutex_unlock(&g->lock);
}

void guest_osi_process_name(int index, char name[16])
{
    /* Odd tasks have a name cut to comm's 15 bytes, as the kernel cuts it. */
    char full[48];
    snprintf(full, sizeof full, "%s-%d", index % 2 ? "busybox-applet" : "task", index);
    memset(name, 0, 16);
    memcpy(name, full, strnlen(full, 15));
}

const char *guest_osi_mapping_name(int index)
{
    static const char *const names[] = {"/bin/busybox", "[heap]", "", "/lib/libc.so.0", "[stack]"};
    return names[index % 5];
}

void guest_fd_path(int32_t fd, char path[32])
{
    if (fd == -100)
        snprintf(path, 32, "/var/run/cwd");
    else
        snprintf(path, 32, "socket:[%d]", 9000 + fd);
}

void guest_set_nest_hook(guest *g, guest_nest_fn fn, void *userdata)
{
    g->nest = fn;
    g->nest_userdata = userdata;
}

void guest_inject(guest *g, uint32_t op, uint32_t code, int count)
{
    pthread_mutex_lock(&g->lock);
    g->inject_op = op;
    g->inject_code = code;
    g->inject_count = count;
    g->inject_sets_size = false;
    pthread_mutex_unlock(&g->lock);
}

void guest_inject_answer(guest *g, uint32_t op, uint32_t code, uint64_t size, int count)
{
    pthread_mutex_lock(&g->lock);
    g->inject_op = op;
    g->inject_code = code;
    g->inject_count = count;
    g->inject_sets_size = true;
    g->inject_size = size;
    pthread_mutex_unlock(&g->lock);
}

void guest_set_junk_fill(guest *g, bool fill) { g->junk_fill = fill; }
void guest_set_sign_extend(guest *g, bool on) { g->sign_extend = on; }
void guest_set_recording(guest *g, bool on) { g->recording = on; }

/* ------------------------------------------------------------ region pool -- */

static uint64_t pool_get(guest *g)
{
    pthread_mutex_lock(&g->lock);
    uint64_t addr;
    if (g->pool_nfree > 0) {
        addr = g->pool_free[--g->pool_nfree];
    } else {
        addr = g->pool_next;
        /* region pages, then one unmapped guard page */
        g->pool_next += (uint64_t)(g->region_pages + 1) * GUEST_PAGE_SIZE;
        map_locked(g, addr, (uint64_t)g->region_pages * GUEST_PAGE_SIZE);
    }
    /* The real module zeroes only the header: the payload keeps whatever
     * the page held. Junk makes stale bytes visible and deterministic. */
    if (g->junk_fill) {
        uint8_t junk[GUEST_PAGE_SIZE];
        memset(junk, GUEST_JUNK, sizeof junk);
        for (uint32_t p = 0; p < g->region_pages; p++)
            write_locked(g, addr + (uint64_t)p * GUEST_PAGE_SIZE, junk, GUEST_PAGE_SIZE);
    }
    uint8_t zero[REGION_HEADER] = {0};
    write_locked(g, addr, zero, REGION_HEADER);
    pthread_mutex_unlock(&g->lock);
    return addr;
}

static void pool_put(guest *g, uint64_t addr)
{
    pthread_mutex_lock(&g->lock);
    if (g->pool_nfree < POOL_MAX)
        g->pool_free[g->pool_nfree++] = addr;
    pthread_mutex_unlock(&g->lock);
}

/* ------------------------------------------------------- region header -- */

typedef struct header {
    uint32_t op, pid;
    uint64_t addr, size;
} header;

static header header_get_locked(guest *g, uint64_t region)
{
    uint8_t raw[REGION_HEADER] = {0};
    read_locked(g, region, raw, REGION_HEADER);
    header h;
    h.op = (uint32_t)guest_decode(g, raw, 4);
    h.pid = (uint32_t)guest_decode(g, raw + 4, 4);
    h.addr = guest_decode(g, raw + 8, 8);
    h.size = guest_decode(g, raw + 16, 8);
    return h;
}

static void header_put_locked(guest *g, uint64_t region, const header *h)
{
    uint8_t raw[REGION_HEADER];
    guest_encode(g, raw, h->op, 4);
    guest_encode(g, raw + 4, h->pid, 4);
    guest_encode(g, raw + 8, h->addr, 8);
    guest_encode(g, raw + 16, h->size, 8);
    write_locked(g, region, raw, REGION_HEADER);
}

static uint32_t header_op(guest *g, uint64_t region)
{
    pthread_mutex_lock(&g->lock);
    uint32_t op = header_get_locked(g, region).op;
    pthread_mutex_unlock(&g->lock);
    return op;
}

static void set_header_op(guest *g, uint64_t region, uint32_t op)
{
    pthread_mutex_lock(&g->lock);
    header h = header_get_locked(g, region);
    h.op = op;
    header_put_locked(g, region, &h);
    pthread_mutex_unlock(&g->lock);
}

/* ---------------------------------------------------------------- the trap -- */

static uint64_t number_register(guest *g, uint64_t num)
{
    num &= g->mask;
    if (g->sign_extend && g->cfg.word_bits == 64 && num <= 0xffffffffull && (num & 0x80000000ull))
        num |= 0xffffffff00000000ull;
    return num;
}

/* One hypercall instruction: fill the registers, run the plugin's callback
 * on this thread for this vCPU, record what it did. */
static uint64_t trap(guest *g, int vcpu, uint64_t conv_id, int depth, uint64_t num,
                     uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t region,
                     bool *handled_out)
{
    CPUState *cpu = &g->cpus[vcpu];
    panda_hypercall call;
    memset(&call, 0, sizeof call);
    call.number = number_register(g, num);
    call.args[0] = a1 & g->mask;
    call.args[1] = a2 & g->mask;
    call.args[2] = a3 & g->mask;
    call.args[3] = a4 & g->mask;

    pthread_mutex_lock(&g->lock);
    cpu->reads = cpu->writes = cpu->failed_ops = 0;
    cpu->region_writes = cpu->region_write_len = cpu->region_write_off = 0;
    cpu->trap_region = region;
    cpu->trap_thread = pthread_self();
    cpu->in_trap = true;
    pthread_mutex_unlock(&g->lock);

    bool handled = emu_hypercall(cpu, &call);

    pthread_mutex_lock(&g->lock);
    cpu->in_trap = false;
    /* Like x86 (rax is both number and result): an unclaimed hypercall
     * leaves the number in the return register. */
    uint64_t ret = (handled && call.set_return) ? (call.return_value & g->mask) : call.number;
    if (g->recording) {
        if (g->ntraps == g->traps_cap) {
            g->traps_cap = g->traps_cap ? g->traps_cap * 2 : 256;
            g->traps = realloc(g->traps, g->traps_cap * sizeof *g->traps);
            if (!g->traps)
                abort();
        }
        trap_record *r = &g->traps[g->ntraps++];
        memset(r, 0, sizeof *r);
        r->seq = g->trap_seq;
        r->conv_id = conv_id;
        r->vcpu = vcpu;
        r->depth = depth;
        r->number = call.number;
        memcpy(r->args, call.args, sizeof r->args);
        r->handled = handled;
        r->set_return = call.set_return;
        r->return_value = call.return_value;
        r->ret_reg = ret;
        r->region = region;
        if (region) {
            read_locked(g, region, r->raw_header, REGION_HEADER);
            header h = header_get_locked(g, region);
            r->op = h.op;
            r->pid = h.pid;
            r->addr = h.addr;
            r->size = h.size;
            read_locked(g, region + REGION_HEADER, r->payload, TRAP_PAYLOAD_KEEP);
        }
        r->reads = cpu->reads;
        r->writes = cpu->writes;
        r->failed_ops = cpu->failed_ops;
        r->region_writes = cpu->region_writes;
        r->region_write_len = cpu->region_write_len;
        r->region_write_off = cpu->region_write_off;
    }
    g->trap_seq++;
    pthread_mutex_unlock(&g->lock);
    if (handled_out)
        *handled_out = handled;
    return ret;
}

uint64_t guest_hypercall(guest *g, int vcpu, uint64_t num, uint64_t a1, uint64_t a2,
                         uint64_t a3, uint64_t a4, bool *handled)
{
    return trap(g, vcpu, 0, 0, num, a1, a2, a3, a4, 0, handled);
}

void guest_register_region(guest *g, int vcpu)
{
    guest_hypercall(g, vcpu, HC_REGISTER_MEM_REGION, g->cfg.region_size, 0, 0, 0, NULL);
}

void guest_enable_interrupts(guest *g, int vcpu)
{
    guest_hypercall(g, vcpu, HC_ENABLE_PORTAL_INTERRUPT, g->cfg.flag_addr, 0, 0, 0, NULL);
}

void guest_boot(guest *g, int vcpu)
{
    guest_register_region(g, vcpu);
    guest_enable_interrupts(g, vcpu);
    /* Drain work queued before the module came up (arg1 = 1). */
    igloo_portal(g, vcpu, HC_PORTAL_INTERRUPT, 1, 0);
}

/* -------------------------------------------------------------- handlers -- */

static bool is_kernel(guest *g, uint64_t addr)
{
    return (addr & g->mask) >= g->cfg.kernel_base;
}

/* READ: kernel addresses are clamped to the region and all-or-nothing;
 * user addresses are not clamped (the host must not ask for more than the
 * region) and a short copy answers READ_PARTIAL with the bytes copied. */
static void op_read(guest *g, uint64_t region, header *h)
{
    uint64_t addr = h->addr & g->mask;
    uint64_t size = h->size & g->mask;
    uint64_t payload = region + REGION_HEADER;
    uint8_t *buf;
    if (is_kernel(g, addr)) {
        if (size > g->cfg.region_size)
            size = g->cfg.region_size;
        if (!all_mapped_locked(g, addr, size)) {
            h->op = RESP_READ_FAIL;
            return;
        }
        buf = malloc(size ? size : 1);
        read_locked(g, addr, buf, size);
        write_locked(g, payload, buf, size);
        free(buf);
        h->op = RESP_READ_OK;
        h->size = size;
        return;
    }
    if (size > g->cfg.region_size) {
        violation(g, "user READ of %llu bytes at %#llx: more than the region (%u) - "
                     "the real module would overrun its page",
                  (unsigned long long)size, (unsigned long long)addr, g->cfg.region_size);
        size = g->cfg.region_size;
    }
    buf = malloc(size ? size : 1);
    uint64_t n = read_locked(g, addr, buf, size);
    write_locked(g, payload, buf, n);
    free(buf);
    if (n == size) {
        h->op = RESP_READ_OK;      /* size left as asked */
    } else {
        h->op = RESP_READ_PARTIAL;
        h->size = n;
    }
}

/* WRITE: WRITE_OK or WRITE_FAIL, size unchanged. Kernel: all-or-nothing;
 * user: bytes before a hole are written (copy_to_user), then WRITE_FAIL. */
static void op_write(guest *g, uint64_t region, header *h)
{
    uint64_t addr = h->addr & g->mask;
    uint64_t size = h->size & g->mask;
    if (size > g->cfg.region_size) {
        if (!is_kernel(g, addr))
            violation(g, "user WRITE of %llu bytes: more than the region (%u)",
                      (unsigned long long)size, g->cfg.region_size);
        size = g->cfg.region_size;
    }
    uint8_t *buf = malloc(size ? size : 1);
    read_locked(g, region + REGION_HEADER, buf, size);
    if (is_kernel(g, addr) && !all_mapped_locked(g, addr, size)) {
        h->op = RESP_WRITE_FAIL;
    } else {
        uint64_t n = write_locked(g, addr, buf, size);
        h->op = n == size ? RESP_WRITE_OK : RESP_WRITE_FAIL;
    }
    free(buf);
}

/* READ_STR: max = size (0 or > region-1 means region-1). READ_OK with size =
 * length (at most max) and a NUL after it; a fault before the end: READ_FAIL,
 * size 0. (strncpy_from_user semantics, used for kernel addresses too.) */
static void op_read_str(guest *g, uint64_t region, header *h)
{
    uint64_t addr = h->addr & g->mask;
    uint64_t max = h->size;
    uint64_t limit = g->cfg.region_size - 1;
    if (max == 0 || max > limit)
        max = limit;
    char *buf = malloc(max + 1);
    uint64_t len = 0;
    bool fault = false;
    while (len < max) {
        uint8_t c;
        if (read_locked(g, addr + len, &c, 1) != 1) {
            fault = true;
            break;
        }
        if (c == 0)
            break;
        buf[len++] = (char)c;
    }
    if (fault) {
        h->op = RESP_READ_FAIL;
        h->size = 0;
    } else {
        buf[len] = 0;
        write_locked(g, region + REGION_HEADER, buf, len + 1);
        h->op = RESP_READ_OK;
        h->size = len;
    }
    free(buf);
}

/* READ_PTR_ARRAY: a NULL-terminated array of word-size pointers; the strings
 * packed NUL-terminated, each cut at 127 characters, until the region is full;
 * stops quietly at a fault. READ_OK, size = bytes used. */
static void op_read_ptr_array(guest *g, uint64_t region, header *h)
{
    int wb = (int)g->cfg.word_bits / 8;
    uint64_t at = h->addr & g->mask;
    uint64_t used = 0;
    uint8_t *out = malloc(g->cfg.region_size);
    for (;;) {
        uint8_t raw[8];
        if (read_locked(g, at, raw, (uint64_t)wb) != (uint64_t)wb)
            break;
        uint64_t p = guest_decode(g, raw, wb);
        if (p == 0)
            break;
        char tmp[128];
        uint64_t len = 0;
        bool fault = false;
        while (len < 127) {
            uint8_t c;
            if (read_locked(g, p + len, &c, 1) != 1) {
                fault = true;
                break;
            }
            if (c == 0)
                break;
            tmp[len++] = (char)c;
        }
        if (fault || used + len + 1 > g->cfg.region_size)
            break;
        memcpy(out + used, tmp, len);
        out[used + len] = 0;
        used += len + 1;
        at += (uint64_t)wb;
    }
    write_locked(g, region + REGION_HEADER, out, used);
    free(out);
    h->op = RESP_READ_OK;
    h->size = used;
}

static void op_read_time(guest *g, header *h)
{
    h->op = RESP_READ_NUM;
    h->size = g->time_ns;
    g->time_ns += g->time_step;
}

/* KALLSYMS_LOOKUP: the payload is a NUL-terminated name (the host must send
 * the NUL: after it the payload holds stale bytes). READ_NUM with the address,
 * or READ_FAIL when the name is unknown or not terminated within the region. */
static void op_kallsyms(guest *g, uint64_t region, header *h)
{
    char *name = calloc(1, g->cfg.region_size + 1);
    read_locked(g, region + REGION_HEADER, name, g->cfg.region_size);
    h->op = RESP_READ_FAIL;
    if (memchr(name, 0, g->cfg.region_size)) {
        for (int i = 0; i < g->nsymbols; i++) {
            if (strcmp(g->symbols[i].name, name) == 0) {
                h->op = RESP_READ_NUM;
                h->size = g->symbols[i].addr;
                break;
            }
        }
    }
    free(name);
}

/* COPY_BUF_GUEST: S = size, the total length (not clamped to the region);
 * a new kernel buffer of S bytes (then an unmapped guard page) holds the
 * first min(S, region) payload bytes, the rest left zero for WRITEs. READ_NUM
 * with its address; never freed. 0 or more than GUEST_COPY_BUF_MAX bytes:
 * WRITE_FAIL, as the module's failed allocation. */
static void op_copy_buf_guest(guest *g, uint64_t region, header *h)
{
    uint64_t total = h->size & g->mask;
    if (total == 0 || total > GUEST_COPY_BUF_MAX) {
        h->op = RESP_WRITE_FAIL;
        return;
    }
    uint64_t first = total < g->cfg.region_size ? total : g->cfg.region_size;
    uint64_t addr = g->copy_next;
    uint64_t pages = (total + GUEST_PAGE_SIZE - 1) / GUEST_PAGE_SIZE;
    g->copy_next += (pages + 1) * GUEST_PAGE_SIZE;
    map_locked(g, addr, pages * GUEST_PAGE_SIZE);
    uint8_t *buf = malloc(first);
    read_locked(g, region + REGION_HEADER, buf, first);
    write_locked(g, addr, buf, first);
    free(buf);
    h->op = RESP_READ_NUM;
    h->size = addr;
}

/* Appends a u64 / u32 in guest order to `out` at *used. */
static void put64(guest *g, uint8_t *out, size_t *used, uint64_t value)
{
    guest_encode(g, out + *used, value, 8);
    *used += 8;
}

static void put32(guest *g, uint8_t *out, size_t *used, uint32_t value)
{
    guest_encode(g, out + *used, value, 4);
    *used += 4;
}

/* Answers READ_OK with the first `size` bytes of `out` as the payload. */
static void answer_payload(guest *g, uint64_t region, header *h, const uint8_t *out, size_t size)
{
    write_locked(g, region + REGION_HEADER, out, size);
    h->op = RESP_READ_OK;
    h->size = size;
}

/* Answers a list (operations.h): `out` (freed here) holds the records after
 * 16 bytes left for {u64 count, u64 total}, and `size` bytes in all. */
static void answer_list(guest *g, uint64_t region, header *h, uint8_t *out, uint64_t count,
                        uint64_t total, size_t size)
{
    guest_encode(g, out, count, 8);
    guest_encode(g, out + 8, total, 8);
    answer_payload(g, region, h, out, size);
    free(out);
}

/* OSI_PROC_ALL (A = records to skip): {u64 result_count, total_count}, then
 * up to (CHUNK - 16) / 56 records {u64 pid, ppid, create_time; u32 uid,
 * gid, euid, egid; char comm[16]}. Process i: pid 100 + i, ppid i ? 100 : 0,
 * create_time 1000000 * (i + 1) + 7, uid i, gid 2i, euid 0, egid 7. */
static void op_osi_proc_all(guest *g, uint64_t region, header *h)
{
    uint32_t chunk = g->cfg.region_size;
    uint8_t *out = calloc(1, chunk);
    size_t used = 16;
    uint64_t per_page = (chunk - 16) / 56, count = 0;
    for (uint64_t i = h->addr; i < (uint64_t)g->nprocesses && count < per_page; i++, count++) {
        put64(g, out, &used, 100 + i);
        put64(g, out, &used, i ? 100 : 0);
        put64(g, out, &used, 1000000 * (i + 1) + 7);
        put32(g, out, &used, (uint32_t)i);
        put32(g, out, &used, (uint32_t)(2 * i));
        put32(g, out, &used, 0);
        put32(g, out, &used, 7);
        guest_osi_process_name((int)i, (char *)out + used);
        used += 16;
    }
    answer_list(g, region, h, out, count, (uint64_t)g->nprocesses, used);
}

/* OSI_MAPPINGS (A = VMAs to skip): the list header, up to (CHUNK / 2) / 72
 * records {base, size, file_off, name_off, offset, flags, pgoff, dev,
 * inode}, the string pool right after the largest page of records; name_off
 * counts from the payload's start. header.addr = the next skip, 0 when done. */
static void op_osi_mappings(guest *g, uint64_t region, header *h)
{
    uint32_t chunk = g->cfg.region_size;
    uint8_t *out = calloc(1, chunk);
    uint64_t per_page = (chunk / 2) / 72, count = 0, i = h->addr;
    size_t used = 16, pool = 16 + per_page * 72;
    h->addr = 0;
    for (; i < (uint64_t)g->nmappings; i++, count++) {
        const char *name = guest_osi_mapping_name((int)i);
        if (count >= per_page || pool + strlen(name) + 1 > chunk) {
            h->addr = i;
            break;
        }
        put64(g, out, &used, 0x400000 + i * 0x10000);
        put64(g, out, &used, 0x1000 * (i + 1));
        put64(g, out, &used, pool);
        put64(g, out, &used, pool);
        put64(g, out, &used, i * 0x1000);
        put64(g, out, &used, i % 2 ? 0x3 : 0x5);
        put64(g, out, &used, i * 0x1000);
        put64(g, out, &used, 8u << 20 | 1);
        put64(g, out, &used, 100 + i);
        memcpy(out + pool, name, strlen(name) + 1);
        pool += strlen(name) + 1;
    }
    answer_list(g, region, h, out, count, (uint64_t)g->nmappings, pool);
}

/* READ_FDS (A = first fd, a signed int; -100 = the cwd): the list header,
 * up to (CHUNK / 2) / 16 records {u64 fd, u64 name_off}, the pool after the
 * largest page of records. header.addr = the fd to resume from, 0 when done. */
static void op_read_fds(guest *g, uint64_t region, header *h)
{
    uint32_t chunk = g->cfg.region_size;
    uint8_t *out = calloc(1, chunk);
    int32_t start = (int32_t)h->addr;
    uint64_t per_page = (chunk / 2) / 16, count = 0;
    size_t used = 16, pool = 16 + per_page * 16;
    char path[32];
    h->addr = 0;
    for (int i = 0; i < (start == -100 ? 1 : g->nfds); i++) {
        int32_t fd = start == -100 ? -100 : g->fds[i];
        if (fd < start && start != -100)
            continue;
        if (count >= per_page) {
            h->addr = (uint32_t)fd;
            break;
        }
        guest_fd_path(fd, path);
        put64(g, out, &used, (uint64_t)(int64_t)fd);
        put64(g, out, &used, pool);
        memcpy(out + pool, path, strlen(path) + 1);
        pool += strlen(path) + 1;
        count++;
    }
    answer_list(g, region, h, out, count, (uint64_t)g->nfds, pool);
}

/* The fixture process the header's pid names (the current task is the
 * first), or -1 after answering READ_FAIL when there is none. */
static int64_t process_index(guest *g, header *h)
{
    int64_t index = h->pid == PORTAL_CURRENT_PID ? 0 : (int64_t)h->pid - 100;
    if (index < 0 || index >= g->nprocesses) {
        h->op = RESP_READ_FAIL;
        h->size = 0;
        return -1;
    }
    return index;
}

/* OSI_PROC (P): 26 u64 fields, field k = pid << 8 | k except pid (2) =
 * the pid and name_offset (4) = 208; the name at 208, size = 208 + its
 * length (the NUL not counted). No such task: READ_FAIL. */
static void op_osi_proc(guest *g, uint64_t region, header *h)
{
    int64_t index = process_index(g, h);
    if (index < 0)
        return;
    uint8_t out[208 + 16];
    size_t used = 0;
    uint64_t pid = 100 + (uint64_t)index;
    for (uint64_t k = 0; k < 26; k++)
        put64(g, out, &used, k == 2 ? pid : k == 4 ? 208 : pid << 8 | k);
    guest_osi_process_name((int)index, (char *)out + 208);
    answer_payload(g, region, h, out, sizeof out);
    h->size = 208 + strlen((char *)out + 208);
}

/* OSI_PROC_MEM (P): {u64 start_brk, u64 brk} = 0x600000 + pid, 0x621000 + pid. */
static void op_osi_proc_mem(guest *g, uint64_t region, header *h)
{
    int64_t index = process_index(g, h);
    if (index < 0)
        return;
    uint8_t out[16];
    size_t used = 0;
    put64(g, out, &used, 0x600000 + 100 + (uint64_t)index);
    put64(g, out, &used, 0x621000 + 100 + (uint64_t)index);
    answer_payload(g, region, h, out, used);
}

/* The VFS ops over one file: GUEST_VFS_FILE holds GUEST_VFS_FILE_SIZE bytes,
 * byte i = (i * 7) & 0xff; GUEST_VFS_EINVAL opens but its reads answer
 * -EINVAL; anything else is -ENOENT. Handle 0x101 (one at a time). */
static void op_vfs(guest *g, uint64_t region, header *h, guest_handler which)
{
    uint32_t chunk = g->cfg.region_size;
    uint8_t *out = calloc(1, chunk);
    size_t used = 0;
    if (which == GH_VFS_OPEN) {
        char path[256] = {0};
        read_locked(g, region + REGION_HEADER, path, sizeof path - 1);
        bool file = strcmp(path, GUEST_VFS_FILE) == 0, einval = strcmp(path, GUEST_VFS_EINVAL) == 0;
        put32(g, out, &used, file || einval ? 0 : (uint32_t)-2);
        put32(g, out, &used, file ? 0x101 : einval ? 0x102 : 0);
        put64(g, out, &used, 0xef53);
        g->vfs_position = 0;
    } else if (which == GH_VFS_READ) {
        uint64_t left = GUEST_VFS_FILE_SIZE - g->vfs_position;
        uint64_t n = h->size < left ? h->size : left;
        if (n > chunk - 16)
            n = chunk - 16;
        bool einval = h->addr == 0x102;
        put32(g, out, &used, einval ? (uint32_t)-22 : 0);
        put32(g, out, &used, einval ? 0 : (uint32_t)n);
        out[used] = !einval && g->vfs_position + n == GUEST_VFS_FILE_SIZE;
        used += 8;
        for (uint64_t i = 0; !einval && i < n; i++)
            out[used++] = (uint8_t)((g->vfs_position + i) * 7);
        if (!einval)
            g->vfs_position += n;
    } else {
        put32(g, out, &used, 0);
        put32(g, out, &used, 0);
    }
    answer_payload(g, region, h, out, used);
    free(out);
}

/* Runs op `op` (1 ..< MAX) on the region: the module's handler table. */
static void run_handler(guest *g, uint64_t region, uint32_t op)
{
    pthread_mutex_lock(&g->lock);
    header h = header_get_locked(g, region);
    if (g->inject_count != 0 && (g->inject_op == 0 || g->inject_op == op)) {
        if (g->inject_count > 0)
            g->inject_count--;
        h.op = g->inject_code;
        if (g->inject_sets_size)
            h.size = g->inject_size;
    } else {
        switch (op < GUEST_MAX_OPS ? g->handlers[op] : GH_UNIMPLEMENTED) {
        case GH_READ: op_read(g, region, &h); break;
        case GH_WRITE: op_write(g, region, &h); break;
        case GH_READ_STR: op_read_str(g, region, &h); break;
        case GH_READ_PTR_ARRAY: op_read_ptr_array(g, region, &h); break;
        case GH_READ_TIME: op_read_time(g, &h); break;
        case GH_KALLSYMS_LOOKUP: op_kallsyms(g, region, &h); break;
        case GH_OSI_PROC: op_osi_proc(g, region, &h); break;
        case GH_OSI_PROC_ALL: op_osi_proc_all(g, region, &h); break;
        case GH_OSI_MAPPINGS: op_osi_mappings(g, region, &h); break;
        case GH_READ_FDS: op_read_fds(g, region, &h); break;
        case GH_OSI_PROC_MEM: op_osi_proc_mem(g, region, &h); break;
        case GH_VFS_OPEN:
        case GH_VFS_READ:
        case GH_VFS_CLOSE: op_vfs(g, region, &h, g->handlers[op]); break;
        case GH_COPY_BUF_GUEST: op_copy_buf_guest(g, region, &h); break;
        case GH_UNIMPLEMENTED: h.op = RESP_WRITE_FAIL; break;
        }
    }
    header_put_locked(g, region, &h);
    pthread_mutex_unlock(&g->lock);
}

/* ---------------------------------------------------------- conversations -- */

static bool interrupt_flag_set(guest *g)
{
    pthread_mutex_lock(&g->lock);
    uint8_t raw[8] = {0};
    read_locked(g, g->cfg.flag_addr, raw, 8);
    pthread_mutex_unlock(&g->lock);
    return guest_decode(g, raw, 8) != 0;
}

static gconv *conv_new(guest *g, int vcpu, int depth, uint64_t num, uint64_t a1, uint64_t a2)
{
    gconv *c = calloc(1, sizeof *c);
    if (!c)
        abort();
    c->g = g;
    c->vcpu = vcpu;
    c->depth = depth;
    c->num = num;
    c->a1 = a1;
    c->a2 = a2;
    c->state = CS_START;
    pthread_mutex_lock(&g->lock);
    c->id = ++g->conv_seq;
    pthread_mutex_unlock(&g->lock);
    return c;
}

gconv *guest_conv_start(guest *g, int vcpu, uint64_t num, uint64_t a1, uint64_t a2)
{
    return conv_new(g, vcpu, 0, num, a1, a2);
}

static void conv_end(gconv *c)
{
    pool_put(c->g, c->region);
    c->state = CS_DONE;
}

/* Exactly one trap, of the innermost live conversation. */
bool guest_conv_step(gconv *c)
{
    guest *g = c->g;
    for (;;) {
        switch (c->state) {
        case CS_START:
            /* §4.1: check the flag before every non-interrupt conversation. */
            if ((uint32_t)c->num != HC_PORTAL_INTERRUPT && interrupt_flag_set(g)) {
                c->child = conv_new(g, c->vcpu, c->depth, HC_PORTAL_INTERRUPT, g->cfg.flag_addr, 0);
                c->state = CS_PRE_INTERRUPT;
                continue;
            }
            c->region = pool_get(g);
            c->arg4 = 0;
            c->state = CS_TRAP;
            continue;

        case CS_PRE_INTERRUPT:
            c->child->vcpu = c->vcpu;
            if (guest_conv_step(c->child)) {
                guest_conv_free(c->child);
                c->child = NULL;
                c->region = pool_get(g);
                c->arg4 = 0;
                c->state = CS_TRAP;
            }
            return false;

        case CS_NESTED:
            c->child->vcpu = c->vcpu;
            if (guest_conv_step(c->child)) {
                guest_conv_free(c->child);
                c->child = NULL;
                run_handler(g, c->region, c->pending_op);
                c->arg4 = header_op(g, c->region);
                c->state = CS_TRAP;
            }
            return false;

        case CS_TRAP: {
            c->ret = trap(g, c->vcpu, c->id, c->depth, c->num, c->a1, c->a2, c->region, c->arg4,
                          c->region, NULL);
            c->traps++;
            int32_t op = (int32_t)header_op(g, c->region);
            if (c->traps >= GUEST_MAX_TRAPS) {
                /* A host that never lets the loop end would hang the harness. */
                pthread_mutex_lock(&g->lock);
                violation(g, "a conversation of hypercall %#llx did not end after %d traps",
                          (unsigned long long)c->num, c->traps);
                pthread_mutex_unlock(&g->lock);
                conv_end(c);
                return true;
            }
            switch (module_after_trap(op, g->op_max)) {
            case MODULE_LEAVE:
                conv_end(c);
                return true;
            case MODULE_REFUSE:
                /* Answered, but the loop ends: the host never sees it. */
                set_header_op(g, c->region, RESP_WRITE_FAIL);
                conv_end(c);
                return true;
            case MODULE_SERVE:
                break;
            }
            uint64_t num, a1, a2;
            if (g->nest && g->nest(g->nest_userdata, c->vcpu, c->depth, (uint32_t)op, &num, &a1, &a2)) {
                c->child = conv_new(g, c->vcpu, c->depth + 1, num, a1, a2);
                c->pending_op = (uint32_t)op;
                c->state = CS_NESTED;
                return false;
            }
            run_handler(g, c->region, (uint32_t)op);
            c->arg4 = header_op(g, c->region);
            return false;
        }

        case CS_DONE:
            return true;
        }
    }
}

uint64_t guest_conv_result(const gconv *c) { return c->ret; }
uint64_t guest_conv_id(const gconv *c) { return c->id; }
uint64_t guest_conv_region(const gconv *c) { return c->region; }
void guest_conv_set_vcpu(gconv *c, int vcpu) { c->vcpu = vcpu; }

void guest_conv_free(gconv *c)
{
    if (!c)
        return;
    if (c->child)
        guest_conv_free(c->child);
    if (c->state != CS_DONE && c->region)
        pool_put(c->g, c->region);
    free(c);
}

uint64_t igloo_portal(guest *g, int vcpu, uint64_t num, uint64_t a1, uint64_t a2)
{
    gconv *c = guest_conv_start(g, vcpu, num, a1, a2);
    while (!guest_conv_step(c))
        ;
    uint64_t r = c->ret;
    guest_conv_free(c);
    return r;
}

/* ----------------------------------------------------------- inspection -- */

trap_record *guest_traps(guest *g, size_t *count)
{
    pthread_mutex_lock(&g->lock);
    trap_record *copy = malloc((g->ntraps ? g->ntraps : 1) * sizeof *copy);
    if (!copy)
        abort();
    memcpy(copy, g->traps, g->ntraps * sizeof *copy);
    *count = g->ntraps;
    pthread_mutex_unlock(&g->lock);
    return copy;
}

int guest_violations(guest *g, char *first, size_t first_len)
{
    pthread_mutex_lock(&g->lock);
    int n = g->violations;
    if (first && first_len)
        snprintf(first, first_len, "%s", g->first_violation);
    pthread_mutex_unlock(&g->lock);
    return n;
}

int guest_offtrap_accesses(guest *g)
{
    pthread_mutex_lock(&g->lock);
    int n = g->offtrap;
    pthread_mutex_unlock(&g->lock);
    return n;
}
