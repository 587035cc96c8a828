/*
 * steps.c - host-side step functions used by the scenarios (see steps.h).
 */
#include "steps.h"

#include <stddef.h>
#include <string.h>

static bool carries_data(uint32_t code)
{
    return code == PORTAL_RESP_READ_OK || code == PORTAL_RESP_READ_PARTIAL;
}

static void encode(const portal_conversation *conv, uint8_t *out, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        out[i] = (uint8_t)(v >> (conv->big_endian ? 8 * (n - 1 - i) : 8 * i));
}

static uint64_t decode(const portal_conversation *conv, const uint8_t *in, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)in[i] << (conv->big_endian ? 8 * (n - 1 - i) : 8 * i);
    return v;
}

/* ------------------------------------------------------------------ script -- */

void script_cmd(script *s, uint32_t op, uint32_t pid, uint64_t addr, int64_t size,
                const void *data, size_t data_length)
{
    if (s->ncmds >= SCRIPT_MAX)
        return;
    portal_command *c = &s->cmds[s->ncmds++];
    memset(c, 0, sizeof *c);
    c->op = op;
    c->pid = pid;
    c->addr = addr;
    c->size = size;
    c->data = data;
    c->data_length = data_length;
}

void script_reset(script *s)
{
    s->starts = s->steps = s->nanswers = 0;
    memset(s->answers, 0, sizeof s->answers);
    memset(&s->first, 0, sizeof s->first);
}

portal_step script_step(void *userdata, portal_conversation *conv, const portal_response *response,
                        portal_command *command, uint64_t *result)
{
    script *s = userdata;
    uint32_t k;                       /* answers this conversation has had */
    memcpy(&k, conv->state, sizeof k);
    s->steps++;
    if (!response) {
        s->starts++;
        s->first = *conv;
    } else {
        k++;
        memcpy(conv->state, &k, sizeof k);
        if (s->nanswers < SCRIPT_MAX) {
            script_answer *a = &s->answers[s->nanswers++];
            a->code = response->code;
            a->addr = response->addr;
            a->size = response->size;
            if (carries_data(response->code) && response->data) {
                uint64_t n = response->size < ANSWER_KEEP ? response->size : ANSWER_KEEP;
                memcpy(a->data, response->data, n);
                a->has_data = true;
            }
        }
        if (s->fail_after && (int)k == s->fail_after) {
            conv->error = s->fail_message ? s->fail_message : "scripted failure";
            return PORTAL_STEP_FAIL;
        }
    }
    if ((int)k < s->ncmds) {
        *command = s->cmds[k];
        return PORTAL_STEP_COMMAND;
    }
    *result = s->result;
    return PORTAL_STEP_FINISH;
}

/* -------------------------------------------------------------------- word -- */

typedef struct word_state {
    uint32_t phase;
    uint64_t value;
    uint8_t out[8];               /* the WRITE payload: alive until the step returns */
} word_state;

portal_step word_step(void *userdata, portal_conversation *conv, const portal_response *response,
                      portal_command *command, uint64_t *result)
{
    word_stats *st = userdata;
    word_state ws;
    memcpy(&ws, conv->state, sizeof ws);
    __atomic_add_fetch(&st->steps, 1, __ATOMIC_RELAXED);
    portal_step r;
    if (!response) {
        command->op = api.op("READ");
        command->addr = conv->call.args[0];
        command->size = 8;
        ws.phase = 1;
        r = PORTAL_STEP_COMMAND;
    } else if (ws.phase == 1) {
        if (response->code != PORTAL_RESP_READ_OK || response->size != 8 || !response->data) {
            conv->error = "word: READ of the input did not answer READ_OK with 8 bytes";
            __atomic_add_fetch(&st->failed, 1, __ATOMIC_RELAXED);
            return PORTAL_STEP_FAIL;
        }
        ws.value = decode(conv, response->data, 8);
        encode(conv, ws.out, word_out(ws.value), 8);
        ws.phase = 2;
        memcpy(conv->state, &ws, sizeof ws);
        command->op = api.op("WRITE");
        command->addr = conv->call.args[1];
        command->size = 8;
        command->data = (uint8_t *)conv->state + offsetof(word_state, out);
        command->data_length = 8;
        return PORTAL_STEP_COMMAND;
    } else {
        if (response->code != PORTAL_RESP_WRITE_OK) {
            conv->error = "word: WRITE of the output did not answer WRITE_OK";
            __atomic_add_fetch(&st->failed, 1, __ATOMIC_RELAXED);
            return PORTAL_STEP_FAIL;
        }
        *result = ws.value + 1;
        __atomic_add_fetch(&st->finished, 1, __ATOMIC_RELAXED);
        r = PORTAL_STEP_FINISH;
    }
    memcpy(conv->state, &ws, sizeof ws);
    return r;
}

/* --------------------------------------------------------------------- irq -- */

portal_step irq_step(void *userdata, portal_conversation *conv, const portal_response *response,
                     portal_command *command, uint64_t *result)
{
    irq_work *w = userdata;
    (void)response;
    (void)command;
    int run = __atomic_fetch_add(&w->runs, 1, __ATOMIC_RELAXED);
    if (run < IRQ_RUNS_KEPT) {
        w->budget_before[run] = conv->install_budget;
        if (w->budget_wanted)
            w->budget_got[run] = api.take_install_budget(conv, w->budget_wanted);
    }
    *result = 0;
    return PORTAL_STEP_FINISH;
}

/* ------------------------------------------------------------------ setup -- */

uint64_t kdata(const guest *g)
{
    return guest_get_config(g)->kernel_base + 0x200000;
}

uint64_t sym_addr(const guest *g, int i)
{
    return guest_get_config(g)->kernel_base + 0x1234560 + (uint64_t)i * 0x1000;
}

guest *setup(T *t, unsigned bits, bool big_endian, unsigned vcpus, const char *const *args,
             int nargs)
{
    guest_config c = {0};
    c.word_bits = bits;
    c.big_endian = big_endian;
    c.vcpus = vcpus;
    return setup_config(t, &c, args, nargs, true);
}

guest *setup_config(T *t, const guest_config *config, const char *const *args, int nargs, bool boot)
{
    guest *g = t_guest_config(t, config);
    guest_map(g, USER_BASE, 4 * GUEST_PAGE_SIZE);
    guest_fill_pattern(g, USER_BASE, 4 * GUEST_PAGE_SIZE);
    guest_map(g, kdata(g), 2 * GUEST_PAGE_SIZE);
    guest_fill_pattern(g, kdata(g), 2 * GUEST_PAGE_SIZE);
    guest_add_symbol(g, "do_sys_open", sym_addr(g, 0));
    guest_add_symbol(g, "init_task", sym_addr(g, 1));
    guest_set_time(g, TIME0, TIME_STEP);
    if (!t_init_argv(t, args, nargs)) {
        t_fail(t, __LINE__, "init_plugin refused the arguments");
        return NULL;
    }
    if (boot)
        guest_boot(g, 0);
    return g;
}

uint64_t converse(guest *g, int vcpu, uint32_t number, uint64_t a1, uint64_t a2, uint64_t *conv_id)
{
    gconv *c = guest_conv_start(g, vcpu, number, a1, a2);
    while (!guest_conv_step(c))
        ;
    uint64_t r = guest_conv_result(c);
    if (conv_id)
        *conv_id = guest_conv_id(c);
    guest_conv_free(c);
    return r;
}

trap_record *run_script(T *t, script *s, uint32_t number, uint64_t a1, uint64_t a2,
                        uint64_t *ret, size_t *ntraps)
{
    if (api.attach(number, script_step, s) != 0) {
        t_fail(t, __LINE__, "portal_attach(%#x) failed", number);
        return NULL;
    }
    uint64_t id;
    uint64_t r = converse(t->g, 0, number, a1, a2, &id);
    if (ret)
        *ret = r;
    return t_traps_of_conv(t, id, ntraps);
}

void expect_page_reused(T *t, uint64_t region, uint32_t size, uint64_t result)
{
    static script again;
    memset(&again, 0, sizeof again);
    script_cmd(&again, api.op("READ"), 0, USER_BASE, size, NULL, 0);
    again.result = result;
    uint64_t ret;
    size_t n;
    RUN_SCRIPT(&again, HC_SYSCALL_ENTER, 0, 0, &ret, &n);
    CHECK_EQ(tr[0].region, region);
    CHECK_EQ(n, 2);
    CHECK_EQ(again.starts, 1);
    CHECK_EQ(again.nanswers, 1);
    CHECK_EQ(again.answers[0].code, PORTAL_RESP_READ_OK);
    CHECK_EQ(again.answers[0].size, size);
    CHECK_EQ(ret, result);
}
