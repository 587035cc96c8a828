/*
 * fake_portal.c - a small stand-in for libportal.so, for testing the harness
 * itself (the mock emulator, the mock guest and the scenarios) without the
 * real library. Written from PROTOCOL.md and the two headers; one big lock,
 * no attempt at speed. It is built into build/libfakeportal.so and is never
 * part of the product.
 */
#define _GNU_SOURCE
#include "portal/panda.h"
#include "portal/portal.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RESP_MAX 0xf0000007u
#define MAX_NAMES 64
#define MAX_OPS 255

enum { L_OFF, L_ERROR, L_WARN, L_INFO, L_DEBUG };
static const char *const level_names[] = {"off", "error", "warn", "info", "debug"};

typedef struct handler {
    char name[64];
    portal_step_fn step;
    void *userdata;
} handler;

typedef struct conv {
    uint64_t region;
    bool interrupt;
    portal_step_fn step;          /* attached work */
    void *userdata;
    handler work[MAX_NAMES];      /* interrupt work, in queue order */
    int nwork, current;
    portal_conversation pc;
    uint8_t state[PORTAL_STATE_SIZE];
} conv;

static pthread_mutex_t lock;
static pthread_once_t lock_once = PTHREAD_ONCE_INIT;

static struct {
    bool up;
    FILE *log;
    int level;
    uint32_t word_bits, big_endian;
    uint64_t mask;
    uint32_t region_size;
    uint32_t budget;
    int max_convs, max_irqs;
    char *ops[MAX_OPS];
    int nops;
    struct { uint32_t number; portal_step_fn step; void *userdata; } attached[MAX_NAMES];
    int nattached;
    handler handlers[MAX_NAMES];
    int nhandlers;
    char pending[MAX_NAMES][64];
    int npending;
    uint64_t flag;
    bool flag_known;
    conv *convs[1024];
    int nconvs;
} E;

static const char *const standard_ops[] = {
    "READ", "WRITE", "READ_STR", "READ_PTR_ARRAY", "DUMP", "EXEC", "OSI_PROC",
    "OSI_PROC_HANDLES", "OSI_PROC_ALL", "OSI_MAPPINGS", "OSI_PROC_MEM", "OSI_PROC_EXE",
    "OSI_PROC_PTREGS", "READ_PROCARGS", "READ_PROCENV", "READ_FDS", "READ_TIME", "READ_FILE",
    "WRITE_FILE", "REGISTER_UPROBE", "UNREGISTER_UPROBE", "REGISTER_KPROBE",
    "UNREGISTER_KPROBE", "REGISTER_SYSCALL_HOOK", "UNREGISTER_SYSCALL_HOOK",
    "REGISTER_PORTALCALL_MAGIC", "SET_PORTALCALL_FASTPATH", "REGISTER_SIGNAL_HOOK",
    "UNREGISTER_SIGNAL_HOOK", "REGISTER_EXIT_HOOK", "UNREGISTER_EXIT_HOOK", "FFI_EXEC",
    "KALLSYMS_LOOKUP", "TRAMP_GENERATE", "HYPERFS_ADD_HYPERFILE", "REGISTER_NETDEV",
    "LOOKUP_NETDEV", "SET_NETDEV_STATE", "GET_NETDEV_STATE", "COPY_BUF_GUEST",
    "PROCFS_CREATE_FILE", "PROCFS_CREATE_OR_LOOKUP_DIR", "SYSFS_CREATE_FILE",
    "SYSFS_CREATE_OR_LOOKUP_DIR", "DEVFS_CREATE_DEVICE", "DEVFS_CREATE_OR_LOOKUP_DIR",
    "SYSCTL_CREATE_FILE", "ANONFS_CREATE_FILE", "SOCKFS_CREATE_SOCKET", "MTD_NUKE",
    "MTD_CREATE", "SET_SCOPE_ENABLED", "VFS_OPEN", "VFS_READ", "VFS_CLOSE",
};

static void make_lock(void)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&lock, &a);
}

static void logf_(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(int level, const char *fmt, ...)
{
    if (level > E.level)
        return;
    FILE *f = E.log ? E.log : stderr;
    fprintf(f, "portal: %s: ", level_names[level]);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fputc('\n', f);
    fflush(f);
}

/* ------------------------------------------------------------ encoding -- */

static void put(uint8_t *out, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        out[i] = (uint8_t)(v >> (E.big_endian ? 8 * (n - 1 - i) : 8 * i));
}

static uint64_t get(const uint8_t *in, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)in[i] << (E.big_endian ? 8 * (n - 1 - i) : 8 * i);
    return v;
}

static void write_flag(CPUState *cpu, uint64_t value)
{
    uint8_t b[8];
    put(b, value, 8);
    if (panda_virtual_memory_write(cpu, E.flag, b, 8) != 0)
        logf_(L_DEBUG, "could not write the interrupt flag at %#llx", (unsigned long long)E.flag);
}

static void write_command(CPUState *cpu, uint64_t region, const portal_command *c)
{
    int64_t size = c->size < 0 ? 0 : c->size;
    if ((uint64_t)size > E.region_size)
        size = E.region_size;
    size_t len = c->data ? c->data_length : 0;
    if (len > E.region_size)
        len = E.region_size;
    uint8_t *buf = calloc(1, 24 + len);
    put(buf, c->op, 4);
    put(buf + 4, c->pid ? c->pid : PORTAL_CURRENT_PID, 4);
    put(buf + 8, c->addr & E.mask, 8);
    put(buf + 16, (uint64_t)size, 8);
    if (len)
        memcpy(buf + 24, c->data, len);
    if (panda_virtual_memory_write(cpu, region, buf, (int)(24 + len)) != 0)
        logf_(L_ERROR, "could not write a command into region %#llx", (unsigned long long)region);
    free(buf);
}

static void write_none(CPUState *cpu, uint64_t region)
{
    portal_command none;
    memset(&none, 0, sizeof none);
    write_command(cpu, region, &none);
}

/* -------------------------------------------------------- conversations -- */

static conv *find_conv(uint64_t region)
{
    for (int i = 0; i < E.nconvs; i++)
        if (E.convs[i]->region == region)
            return E.convs[i];
    return NULL;
}

static void drop_conv(conv *c)
{
    for (int i = 0; i < E.nconvs; i++) {
        if (E.convs[i] == c) {
            E.convs[i] = E.convs[--E.nconvs];
            break;
        }
    }
    free(c);
}

static handler *find_handler(const char *name)
{
    for (int i = 0; i < E.nhandlers; i++)
        if (strcmp(E.handlers[i].name, name) == 0)
            return &E.handlers[i];
    return NULL;
}

static void converse(CPUState *cpu, panda_hypercall *call, bool interrupt, portal_step_fn step,
                     void *userdata)
{
    uint64_t region = call->args[2] & E.mask;
    conv *c = find_conv(region);
    portal_response response, *resp = NULL;
    uint8_t *data = NULL;
    if (!c) {
        if (E.nconvs >= E.max_convs || E.nconvs >= 1024) {
            logf_(L_WARN, "too many live conversations: hypercall %#x refused",
                  (uint32_t)call->number);
            return;
        }
        c = calloc(1, sizeof *c);
        c->region = region;
        c->interrupt = interrupt;
        c->step = step;
        c->userdata = userdata;
        c->pc.call.number = (uint32_t)call->number;
        c->pc.call.vcpu = (uint32_t)panda_cpu_index(cpu);
        memcpy(c->pc.call.args, call->args, sizeof call->args);
        c->pc.region_address = region;
        c->pc.region_size = E.region_size;
        c->pc.word_bits = E.word_bits;
        c->pc.big_endian = E.big_endian;
        c->pc.state = c->state;
        if (interrupt) {
            for (int i = 0; i < E.npending; i++) {
                handler *h = find_handler(E.pending[i]);
                if (h)
                    c->work[c->nwork++] = *h;
            }
            E.npending = 0;
            if (E.flag_known)
                write_flag(cpu, 0);
            c->pc.install_budget = E.budget;
        }
        E.convs[E.nconvs++] = c;
    } else {
        uint32_t code = (uint32_t)call->args[3];
        if (code < PORTAL_RESP_NONE || code >= RESP_MAX) {
            logf_(L_ERROR, "invalid response %#x in region %#llx: conversation ended", code,
                  (unsigned long long)region);
            write_none(cpu, region);
            drop_conv(c);
            return;
        }
        uint8_t h[24] = {0};
        panda_virtual_memory_read(cpu, region, h, 24);
        response.code = code;
        response.addr = get(h + 8, 8);
        response.size = get(h + 16, 8);
        response.data = NULL;
        if (code == PORTAL_RESP_READ_OK || code == PORTAL_RESP_READ_PARTIAL) {
            if (response.size > E.region_size)
                response.size = E.region_size;
            data = malloc(response.size + 1);
            panda_virtual_memory_read(cpu, region + 24, data, (int)response.size);
            response.data = data;
        }
        resp = &response;
    }
    c->pc.region_size = E.region_size;
    for (;;) {
        portal_step_fn fn = c->interrupt ? (c->current < c->nwork ? c->work[c->current].step : NULL)
                                         : c->step;
        void *ud = c->interrupt ? (c->current < c->nwork ? c->work[c->current].userdata : NULL)
                                : c->userdata;
        if (!fn) {                         /* interrupt: all work done */
            write_none(cpu, region);
            drop_conv(c);
            break;
        }
        portal_command cmd;
        memset(&cmd, 0, sizeof cmd);
        uint64_t result = 0;
        c->pc.error = NULL;
        portal_step st = fn(ud, &c->pc, resp, &cmd, &result);
        resp = NULL;
        if (st == PORTAL_STEP_COMMAND) {
            if (cmd.op == 0 || (int)cmd.op > E.nops) {
                logf_(L_ERROR, "a step sent op %u, not in the op table: conversation ended", cmd.op);
                write_none(cpu, region);
                drop_conv(c);
                break;
            }
            write_command(cpu, region, &cmd);
            break;
        }
        if (st == PORTAL_STEP_FINISH && c->interrupt) {
            c->current++;
            memset(c->state, 0, sizeof c->state);
            continue;
        }
        if (st == PORTAL_STEP_FINISH) {
            write_none(cpu, region);
            call->return_value = result;
            call->set_return = true;
            drop_conv(c);
            break;
        }
        logf_(L_ERROR, "step failed: %s", c->pc.error ? c->pc.error : "(no message)");
        write_none(cpu, region);
        drop_conv(c);
        break;
    }
    free(data);
}

static bool on_hypercall(CPUState *cpu, panda_hypercall *call)
{
    pthread_mutex_lock(&lock);
    uint32_t num = (uint32_t)call->number;
    bool mine = true;
    if (E.npending && E.flag_known)
        write_flag(cpu, 1);
    if (num == PORTAL_HC_REGISTER_MEM_REGION) {
        E.region_size = (uint32_t)call->args[0];
    } else if (num == PORTAL_HC_ENABLE_PORTAL_INTERRUPT) {
        E.flag = call->args[0] & E.mask;
        E.flag_known = true;
    } else if (num == PORTAL_HC_PORTAL_INTERRUPT) {
        converse(cpu, call, true, NULL, NULL);
    } else {
        int i;
        for (i = 0; i < E.nattached && E.attached[i].number != num; i++)
            ;
        if (i < E.nattached)
            converse(cpu, call, false, E.attached[i].step, E.attached[i].userdata);
        else
            mine = false;
    }
    if (E.npending && E.flag_known)
        write_flag(cpu, 1);
    pthread_mutex_unlock(&lock);
    return mine;
}

/* ------------------------------------------------------------ arguments -- */

static bool parse_number(const char *s, uint64_t *out)
{
    if (!*s)
        return false;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return true;
}

static bool load_ops(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char line[256];
    E.nops = 0;
    while (fgets(line, sizeof line, f) && E.nops < MAX_OPS) {
        char *hash = strchr(line, '#');
        if (hash)
            *hash = 0;
        char *p = line, *end;
        while (*p == ' ' || *p == '\t')
            p++;
        end = p + strlen(p);
        while (end > p && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t'))
            *--end = 0;
        if (*p)
            E.ops[E.nops++] = strdup(p);
    }
    fclose(f);
    return E.nops > 0;
}

static void free_ops(void)
{
    for (int i = 0; i < E.nops; i++)
        free(E.ops[i]);
    E.nops = 0;
}

bool init_plugin(void *self)
{
    pthread_once(&lock_once, make_lock);
    pthread_mutex_lock(&lock);
    const char *const *argv;
    int argc = panda_get_plugin_args(self, &argv);
    memset(&E, 0, sizeof E);
    E.level = L_WARN;
    E.region_size = 4072;
    E.budget = 32;
    E.max_convs = 1024;
    E.max_irqs = MAX_NAMES;
    bool ok = true;
    const char *ops_path = NULL;
    /* log_file and log first, so refusals are logged where asked */
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "log_file=", 9) == 0 && !E.log)
            E.log = fopen(argv[i] + 9, "a");
    }
    for (int i = 0; i < argc && ok; i++) {
        const char *eq = strchr(argv[i], '=');
        if (!eq || eq == argv[i]) {
            logf_(L_ERROR, "argument %s is not key=value", argv[i]);
            ok = false;
            break;
        }
        size_t klen = (size_t)(eq - argv[i]);
        const char *v = eq + 1;
        uint64_t n = 0;
#define KEY(k) (klen == strlen(k) && strncmp(argv[i], k, klen) == 0)
        if (KEY("log")) {
            int l;
            for (l = 0; l < 5 && strcmp(v, level_names[l]) != 0; l++)
                ;
            if (l == 5) {
                logf_(L_ERROR, "log: %s is not off, error, warn, info or debug", v);
                ok = false;
            } else {
                E.level = l;
            }
        } else if (KEY("log_file")) {
            /* opened above */
        } else if (KEY("region_size") || KEY("install_budget") || KEY("max_conversations") ||
                   KEY("max_interrupts")) {
            if (!parse_number(v, &n) || n == 0 || n > 0xffffffffu) {
                logf_(L_ERROR, "%.*s: %s is not a positive number", (int)klen, argv[i], v);
                ok = false;
            } else if (KEY("region_size")) {
                E.region_size = (uint32_t)n;
            } else if (KEY("install_budget")) {
                E.budget = (uint32_t)n;
            } else if (KEY("max_conversations")) {
                E.max_convs = (int)n;
            } else {
                E.max_irqs = n < MAX_NAMES ? (int)n : MAX_NAMES;
            }
        } else if (KEY("ops")) {
            ops_path = v;
        } else if (KEY("demo")) {
            /* accepted, ignored */
        } else {
            logf_(L_ERROR, "unknown argument %.*s", (int)klen, argv[i]);
            ok = false;
        }
#undef KEY
    }
    if (ok && ops_path && !load_ops(ops_path)) {
        logf_(L_ERROR, "ops: cannot read an op table from %s", ops_path);
        ok = false;
    }
    if (ok && !ops_path) {
        for (size_t i = 0; i < sizeof standard_ops / sizeof standard_ops[0]; i++)
            E.ops[E.nops++] = strdup(standard_ops[i]);
    }
    if (!ok) {
        free_ops();
        if (E.log)
            fclose(E.log);
        E.log = NULL;
        pthread_mutex_unlock(&lock);
        return false;
    }
    panda_guest_info info;
    panda_get_guest_info(&info);
    E.word_bits = info.word_bits;
    E.big_endian = info.big_endian;
    E.mask = info.word_bits == 32 ? 0xffffffffull : ~0ull;
    panda_register_hypercall_callback(self, on_hypercall);
    E.up = true;
    logf_(L_INFO, "fake portal up: %u-bit %s-endian", E.word_bits, E.big_endian ? "big" : "little");
    pthread_mutex_unlock(&lock);
    return true;
}

void uninit_plugin(void *self)
{
    pthread_mutex_lock(&lock);
    panda_unregister_hypercall_callback(self);
    for (int i = 0; i < E.nconvs; i++) {
        logf_(L_WARN, "ending the live conversation in region %#llx",
              (unsigned long long)E.convs[i]->region);
        free(E.convs[i]);
    }
    E.nconvs = 0;
    free_ops();
    if (E.log)
        fclose(E.log);
    E.log = NULL;
    E.up = false;
    pthread_mutex_unlock(&lock);
}

/* ---------------------------------------------------------------- C API -- */

int portal_attach(uint32_t number, portal_step_fn step, void *userdata)
{
    if (number == PORTAL_HC_REGISTER_MEM_REGION || number == PORTAL_HC_ENABLE_PORTAL_INTERRUPT ||
        number == PORTAL_HC_PORTAL_INTERRUPT || !step)
        return -1;
    pthread_mutex_lock(&lock);
    int i;
    for (i = 0; i < E.nattached && E.attached[i].number != number; i++)
        ;
    int r = 0;
    if (i == E.nattached) {
        if (E.nattached == MAX_NAMES)
            r = -1;
        else
            E.nattached++;
    }
    if (r == 0) {
        E.attached[i].number = number;
        E.attached[i].step = step;
        E.attached[i].userdata = userdata;
    }
    pthread_mutex_unlock(&lock);
    return r;
}

int portal_detach(uint32_t number)
{
    pthread_mutex_lock(&lock);
    int r = -1;
    for (int i = 0; i < E.nattached; i++) {
        if (E.attached[i].number == number) {
            E.attached[i] = E.attached[--E.nattached];
            r = 0;
            break;
        }
    }
    pthread_mutex_unlock(&lock);
    return r;
}

int portal_register_interrupt(const char *name, portal_step_fn step, void *userdata)
{
    pthread_mutex_lock(&lock);
    handler *h = find_handler(name);
    int r = 0;
    if (!h) {
        if (E.nhandlers == MAX_NAMES)
            r = -1;
        else
            h = &E.handlers[E.nhandlers++];
    }
    if (h) {
        snprintf(h->name, sizeof h->name, "%s", name);
        h->step = step;
        h->userdata = userdata;
    }
    pthread_mutex_unlock(&lock);
    return r;
}

bool portal_queue_interrupt(const char *name)
{
    pthread_mutex_lock(&lock);
    bool r = false;
    if (find_handler(name)) {
        int i;
        for (i = 0; i < E.npending && strcmp(E.pending[i], name) != 0; i++)
            ;
        if (i < E.npending) {
            r = true;
        } else if (E.npending < E.max_irqs) {
            snprintf(E.pending[E.npending++], sizeof E.pending[0], "%s", name);
            r = true;
        }
    } else {
        logf_(L_ERROR, "no interrupt handler named %s", name);
    }
    /* The flag is written at the next trap: memory is only touched from a
     * vCPU callback. */
    pthread_mutex_unlock(&lock);
    return r;
}

uint32_t portal_take_install_budget(portal_conversation *conversation, uint32_t wanted)
{
    uint32_t got = wanted < conversation->install_budget ? wanted : conversation->install_budget;
    conversation->install_budget -= got;
    return got;
}

uint32_t portal_op(const char *name)
{
    pthread_mutex_lock(&lock);
    uint32_t r = 0;
    for (int i = 0; i < E.nops; i++) {
        if (strcmp(E.ops[i], name) == 0) {
            r = (uint32_t)i + 1;
            break;
        }
    }
    pthread_mutex_unlock(&lock);
    return r;
}
