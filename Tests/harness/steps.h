/*
 * steps.h - host-side work for the scenarios: step functions of the C API
 * (portal.h) that the real library runs as conversations.
 *
 * Per-conversation progress lives in conversation->state (zeroed by the
 * engine), so one step function can serve many conversations at once;
 * userdata holds the script and what was seen.
 */
#ifndef HARNESS_STEPS_H
#define HARNESS_STEPS_H

#include "harness.h"

/* ---- script: fixed commands, every answer recorded ---- */
#define SCRIPT_MAX 16
#define ANSWER_KEEP 4096

typedef struct script_answer {
    uint32_t code;
    uint64_t addr, size;
    bool has_data;
    uint8_t data[ANSWER_KEEP];     /* min(size, ANSWER_KEEP) bytes of data */
} script_answer;

typedef struct script {
    int ncmds;
    portal_command cmds[SCRIPT_MAX];
    int fail_after;           /* FAIL when answer #fail_after (1-based) arrives; 0 = never */
    const char *fail_message;
    uint64_t result;          /* FINISH value after the last answer */
    /* seen */
    int starts;               /* first steps (conversations started) */
    int steps;                /* all steps */
    int nanswers;
    script_answer answers[SCRIPT_MAX];
    portal_conversation first;  /* the conversation as seen at its first step */
} script;

portal_step script_step(void *userdata, portal_conversation *conv, const portal_response *response,
                        portal_command *command, uint64_t *result);
void script_reset(script *s);   /* forget what was seen, keep the commands */
/* Append a command. */
void script_cmd(script *s, uint32_t op, uint32_t pid, uint64_t addr, int64_t size,
                const void *data, size_t data_length);

/* ---- word: READ 8 bytes at arg1, WRITE value*3+7 at arg2, finish value+1 ---- */
typedef struct word_stats {
    uint64_t finished;        /* atomically updated */
    uint64_t failed;
    uint64_t steps;
} word_stats;

portal_step word_step(void *userdata, portal_conversation *conv, const portal_response *response,
                      portal_command *command, uint64_t *result);
static inline uint64_t word_out(uint64_t in) { return in * 3 + 7; }

/* ---- interrupt work: takes budget_wanted of the install budget, no command ---- */
#define IRQ_RUNS_KEPT 16
typedef struct irq_work {
    uint32_t budget_wanted;   /* 0: do not take */
    /* seen */
    int runs;                 /* atomically updated */
    uint32_t budget_before[IRQ_RUNS_KEPT], budget_got[IRQ_RUNS_KEPT];
} irq_work;

portal_step irq_step(void *userdata, portal_conversation *conv, const portal_response *response,
                     portal_command *command, uint64_t *result);

/* ---- scenario setup ----
 * A guest of the given shape, init_plugin with `args`, the module booted
 * (region registered, interrupt flag given, the init interrupt conversation
 * run) and this memory:
 *   user   USER_BASE .. +4 pages, pattern_byte() bytes
 *   kernel kdata(g) .. +2 pages, pattern_byte() bytes, a hole after
 *   symbols "do_sys_open" = sym_addr(g, 0), "init_task" = sym_addr(g, 1)
 *   READ_TIME starts at 0x1122334455667788 and steps by 1000
 * Returns NULL (the scenario failed) when init_plugin refused. */
guest *setup(T *t, unsigned bits, bool big_endian, unsigned vcpus, const char *const *args,
             int nargs);
/* The same from a full config; boot = false skips guest_boot. */
guest *setup_config(T *t, const guest_config *config, const char *const *args, int nargs, bool boot);
#define SETUP(bits, be, vcpus)                                                \
    guest *g = setup(t, (bits), (be), (vcpus), NULL, 0);                      \
    if (!g)                                                                   \
        return
uint64_t kdata(const guest *g);
uint64_t sym_addr(const guest *g, int i);
#define TIME0 0x1122334455667788ull
#define TIME_STEP 1000ull

/* Runs one whole conversation of hypercall `number` on `vcpu` (work must
 * be attached already). Returns the return register; *conv_id for
 * t_traps_of_conv. */
uint64_t converse(guest *g, int vcpu, uint32_t number, uint64_t a1, uint64_t a2, uint64_t *conv_id);

/* Attaches `s` to `number`, runs one conversation on vCPU 0 and returns
 * its trap records (NULL after a t_fail). *ret gets the return register. */
trap_record *run_script(T *t, script *s, uint32_t number, uint64_t a1, uint64_t a2,
                        uint64_t *ret, size_t *ntraps);
/* After a conversation on `region` ended early: the guest's next
 * HC_SYSCALL_ENTER conversation reuses that page and runs normally (one
 * READ of `size` bytes at USER_BASE, answered READ_OK; the hypercall
 * returns `result`). Replaces the work attached to HC_SYSCALL_ENTER; check
 * t->failed after it. */
void expect_page_reused(T *t, uint64_t region, uint32_t size, uint64_t result);

#define RUN_SCRIPT(s, number, a1, a2, ret, n)                                 \
    trap_record *tr = run_script(t, (s), (number), (a1), (a2), (ret), (n));   \
    if (!tr)                                                                  \
        return

/* Compare a trap's region header with the bytes a command must produce. */
#define CHECK_HEADER(rec, op_, pid_, addr_, size_)                            \
    do {                                                                      \
        uint8_t want_[REGION_HEADER];                                         \
        t_expect_header(t->g, want_, (op_), (pid_), (addr_), (size_));        \
        CHECK_BYTES((rec)->raw_header, want_, REGION_HEADER);                 \
    } while (0)

#endif /* HARNESS_STEPS_H */
