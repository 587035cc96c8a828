/*
 * scenarios_interrupts.c - host-initiated work (PROTOCOL.md §5): the flag,
 * queue order, queueing before the flag is known, re-queueing, the install
 * budget, the pending-queue limit.
 */
#include "steps.h"

#include <stdlib.h>
#include <string.h>

static irq_work wa, wb, wc;
static irq_log lg;

static void reset_work(void)
{
    memset(&wa, 0, sizeof wa);
    memset(&wb, 0, sizeof wb);
    memset(&wc, 0, sizeof wc);
    memset(&lg, 0, sizeof lg);
    wa.name = "alpha";
    wa.id = 1;
    wa.log = &lg;
    wb.name = "beta";
    wb.id = 2;
    wb.log = &lg;
    wc.name = "gamma";
    wc.id = 3;
    wc.log = &lg;
}

static bool flag_is(guest *g, uint64_t value)
{
    uint8_t raw[8], want[8];
    guest_encode(g, want, value, 8);
    if (guest_peek(g, guest_get_config(g)->flag_addr, raw, 8) != 8)
        return false;
    return memcmp(raw, want, 8) == 0;
}

#define CHECK_FLAG(value)                                                     \
    do {                                                                      \
        uint8_t raw_[8] = {0};                                                \
        guest_peek(g, guest_get_config(g)->flag_addr, raw_, 8);               \
        CHECK(flag_is(g, (value)), "flag bytes %02x%02x%02x%02x%02x%02x%02x%02x, expected %llu", \
              raw_[0], raw_[1], raw_[2], raw_[3], raw_[4], raw_[5], raw_[6], raw_[7], \
              (unsigned long long)(value));                                   \
    } while (0)

/* A plain hypercall the plugin does not own: a trap and nothing more. */
static void plain_trap(guest *g)
{
    guest_hypercall(g, 0, HC_MODULE_BASE, 0, 0, 0, 0, NULL);
}

/* Queued before the guest gave the flag: the flag is set once it is known
 * (at the ENABLE trap or the next), and the work runs in the next
 * conversation's interrupt check. */
static void irq_queue_before_flag(T *t)
{
    REQUIRE_API();
    guest_config c = {.word_bits = 64};
    guest *g = setup_config(t, &c, NULL, 0, false);
    if (!g)
        return;
    reset_work();
    wa.write_addr = kdata(g) + 0x80;
    wa.write_value = 0x1111;
    CHECK_EQ(api.register_interrupt("alpha", irq_step, &wa), 0);
    CHECK(api.queue_interrupt("alpha"), "queue_interrupt(alpha) returned false");
    guest_register_region(g, 0);
    plain_trap(g);
    CHECK_FLAG(0);                               /* the host does not know it yet */
    guest_enable_interrupts(g, 0);
    if (!flag_is(g, 1)) {
        t_note(t, "the flag was not set at the ENABLE_PORTAL_INTERRUPT trap itself");
        plain_trap(g);
    }
    CHECK_FLAG(1);
    uint64_t before = guest_interrupt_conversations(g);
    igloo_portal(g, 0, HC_SYSCALL_ENTER, 0, 0);  /* checks the flag first */
    CHECK_EQ(guest_interrupt_conversations(g) - before, 1);
    CHECK_EQ(wa.runs, 1);
    CHECK_EQ(wa.last_code, PORTAL_RESP_WRITE_OK);
    CHECK_EQ(guest_get_u64(g, kdata(g) + 0x80), 0x1111);
    CHECK_FLAG(0);
    CHECK_EQ(wa.budget_before[0], 32);
}

/* Queued before the module came up: its init interrupt conversation
 * (arg1 = 1) drains it. */
static void irq_module_init_drain(T *t)
{
    REQUIRE_API();
    guest_config c = {.word_bits = 32, .big_endian = true};
    guest *g = setup_config(t, &c, NULL, 0, false);
    if (!g)
        return;
    reset_work();
    wa.write_addr = kdata(g) + 0x80;
    wa.write_value = 0x2222;
    CHECK_EQ(api.register_interrupt("alpha", irq_step, &wa), 0);
    CHECK(api.queue_interrupt("alpha"), "queue_interrupt(alpha) returned false");
    guest_boot(g, 0);
    CHECK_EQ(wa.runs, 1);
    CHECK_EQ(guest_get_u64(g, kdata(g) + 0x80), 0x2222);
    CHECK_FLAG(0);
    size_t n;
    trap_record *all = guest_traps(g, &n);
    /* REGISTER, ENABLE, then the init conversation: WRITE, NONE */
    bool ok = n == 4 && (uint32_t)all[2].number == HC_PORTAL_INTERRUPT && all[2].args[0] == 1 &&
              all[2].op == OP_WRITE && all[3].op == 0;
    uint32_t op2 = n > 2 ? all[2].op : 0;
    free(all);
    CHECK(ok, "expected 4 traps (REGISTER, ENABLE, interrupt a1=1 with WRITE, NONE); got %zu, "
              "third op %#x", n, op2);
}

/* Three handlers queued in one window run in queue order, in one
 * conversation. */
static void irq_queue_order(T *t)
{
    REQUIRE_API();
    SETUP(64, false, 1);
    reset_work();
    wa.write_addr = kdata(g) + 0x100;
    wa.write_value = 0xa;
    wb.write_addr = kdata(g) + 0x108;
    wb.write_value = 0xb;
    wc.write_addr = kdata(g) + 0x110;
    wc.write_value = 0xc;
    CHECK_EQ(api.register_interrupt("alpha", irq_step, &wa), 0);
    CHECK_EQ(api.register_interrupt("beta", irq_step, &wb), 0);
    CHECK_EQ(api.register_interrupt("gamma", irq_step, &wc), 0);
    CHECK(api.queue_interrupt("beta"), "queue beta");
    CHECK(api.queue_interrupt("gamma"), "queue gamma");
    CHECK(api.queue_interrupt("alpha"), "queue alpha");
    plain_trap(g);
    uint64_t before = guest_interrupt_conversations(g);
    igloo_portal(g, 0, HC_SYSCALL_ENTER, 0, 0);
    CHECK_EQ(guest_interrupt_conversations(g) - before, 1);
    CHECK_EQ(lg.n, 3);
    CHECK(lg.ids[0] == 2 && lg.ids[1] == 3 && lg.ids[2] == 1,
          "ran in order %d %d %d, expected 2 3 1 (beta gamma alpha)", lg.ids[0], lg.ids[1], lg.ids[2]);
    CHECK(lg.regions[0] == lg.regions[1] && lg.regions[1] == lg.regions[2],
          "the three ran in different conversations");
    CHECK_EQ(guest_get_u64(g, kdata(g) + 0x100), 0xa);
    CHECK_EQ(guest_get_u64(g, kdata(g) + 0x108), 0xb);
    CHECK_EQ(guest_get_u64(g, kdata(g) + 0x110), 0xc);
    /* one more conversation: nothing pending, no interrupt */
    igloo_portal(g, 0, HC_SYSCALL_ENTER, 0, 0);
    CHECK_EQ(guest_interrupt_conversations(g) - before, 1);
    CHECK_EQ(lg.n, 3);
}

/* The flag is 8 bytes in guest order, set by a trap after queueing and
 * cleared by the PORTAL_INTERRUPT conversation's first trap; the bytes
 * around it are never touched. */
static void irq_flag_bytes(T *t, unsigned bits, bool be)
{
    REQUIRE_API();
    SETUP(bits, be, 1);
    reset_work();
    CHECK_EQ(api.register_interrupt("alpha", irq_step, &wa), 0);
    CHECK(api.queue_interrupt("alpha"), "queue alpha");
    plain_trap(g);
    uint64_t f = guest_get_config(g)->flag_addr;
    uint8_t raw[24], want[24];
    memset(want, 0xCC, sizeof want);
    guest_encode(g, want + 8, 1, 8);
    guest_peek(g, f - 8, raw, 24);
    CHECK_BYTES(raw, want, 24);
    gconv *c = guest_conv_start(g, 0, HC_SYSCALL_ENTER, 0, 0);
    guest_conv_step(c);                          /* the interrupt conversation's first trap */
    memset(want + 8, 0, 8);
    guest_peek(g, f - 8, raw, 24);
    bool cleared = memcmp(raw, want, 24) == 0;
    while (!guest_conv_step(c))
        ;
    guest_conv_free(c);
    CHECK(cleared, "the flag was not cleared at the PORTAL_INTERRUPT trap");
    CHECK_EQ(wa.runs, 1);
    guest_peek(g, f - 8, raw, 24);
    CHECK_BYTES(raw, want, 24);
}

static void irq_flag_bytes_le64(T *t) { irq_flag_bytes(t, 64, false); }
static void irq_flag_bytes_be64(T *t) { irq_flag_bytes(t, 64, true); }
static void irq_flag_bytes_le32(T *t) { irq_flag_bytes(t, 32, false); }
static void irq_flag_bytes_be32(T *t) { irq_flag_bytes(t, 32, true); }

/* Queueing a pending name again does nothing more; a handler that queues
 * itself while it runs runs again in a later window; unknown names: false. */
static void irq_dedup_and_requeue(T *t)
{
    REQUIRE_API();
    SETUP(64, false, 1);
    reset_work();
    wa.requeue_times = 1;
    CHECK_EQ(api.register_interrupt("alpha", irq_step, &wa), 0);
    CHECK(!api.queue_interrupt("nobody"), "queue_interrupt of an unregistered name returned true");
    CHECK(api.queue_interrupt("alpha"), "queue alpha");
    CHECK(api.queue_interrupt("alpha"), "queue alpha again");
    plain_trap(g);
    igloo_portal(g, 0, HC_SYSCALL_ENTER, 0, 0);
    CHECK_EQ(wa.runs, 1);
    CHECK(wa.requeue_ok[0], "queue_interrupt from inside the handler returned false");
    int extra = 0;
    while (wa.runs < 2 && extra < 3) {
        igloo_portal(g, 0, HC_SYSCALL_ENTER, 0, 0);
        extra++;
    }
    CHECK(wa.runs == 2, "the re-queued handler did not run again within 3 conversations");
    if (extra > 1)
        t_note(t, "the re-queued handler ran %d conversations later", extra);
    for (int i = 0; i < 3; i++)
        igloo_portal(g, 0, HC_SYSCALL_ENTER, 0, 0);
    CHECK_EQ(wa.runs, 2);
    CHECK_FLAG(0);
}

/* The install budget: 32 per window, shared by the handlers of the window. */
static void irq_install_budget_default(T *t)
{
    REQUIRE_API();
    SETUP(64, false, 1);
    reset_work();
    wa.budget_wanted = 20;
    wb.budget_wanted = 20;
    CHECK_EQ(api.register_interrupt("alpha", irq_step, &wa), 0);
    CHECK_EQ(api.register_interrupt("beta", irq_step, &wb), 0);
    CHECK(api.queue_interrupt("alpha"), "queue alpha");
    CHECK(api.queue_interrupt("beta"), "queue beta");
    plain_trap(g);
    igloo_portal(g, 0, HC_SYSCALL_ENTER, 0, 0);
    CHECK_EQ(wa.runs, 1);
    CHECK_EQ(wb.runs, 1);
    CHECK_EQ(wa.budget_before[0], 32);
    CHECK_EQ(wa.budget_got[0], 20);
    CHECK_EQ(wb.budget_before[0], 12);
    CHECK_EQ(wb.budget_got[0], 12);
    /* a new window, a new budget */
    CHECK(api.queue_interrupt("alpha"), "queue alpha");
    plain_trap(g);
    igloo_portal(g, 0, HC_SYSCALL_ENTER, 0, 0);
    CHECK_EQ(wa.runs, 2);
    CHECK_EQ(wa.budget_before[1], 32);
    CHECK_EQ(wa.budget_got[1], 20);
}

static void irq_install_budget_arg(T *t)
{
    REQUIRE_API();
    const char *args[] = {"install_budget=5"};
    guest *g = setup(t, 64, false, 1, args, 1);
    if (!g)
        return;
    reset_work();
    wa.budget_wanted = 3;
    wb.budget_wanted = 3;
    CHECK_EQ(api.register_interrupt("alpha", irq_step, &wa), 0);
    CHECK_EQ(api.register_interrupt("beta", irq_step, &wb), 0);
    CHECK(api.queue_interrupt("alpha"), "queue alpha");
    CHECK(api.queue_interrupt("beta"), "queue beta");
    plain_trap(g);
    igloo_portal(g, 0, HC_SYSCALL_ENTER, 0, 0);
    CHECK_EQ(wa.budget_before[0], 5);
    CHECK_EQ(wa.budget_got[0], 3);
    CHECK_EQ(wb.budget_before[0], 2);
    CHECK_EQ(wb.budget_got[0], 2);
}

static void irq_later_registration_wins(T *t)
{
    REQUIRE_API();
    SETUP(64, false, 1);
    reset_work();
    wb.name = "alpha";
    CHECK_EQ(api.register_interrupt("alpha", irq_step, &wa), 0);
    CHECK_EQ(api.register_interrupt("alpha", irq_step, &wb), 0);
    CHECK(api.queue_interrupt("alpha"), "queue alpha");
    plain_trap(g);
    igloo_portal(g, 0, HC_SYSCALL_ENTER, 0, 0);
    CHECK_EQ(wa.runs, 0);
    CHECK_EQ(wb.runs, 1);
}

/* max_interrupts=2: a third distinct name does not fit; a pending one
 * queued again is fine. */
static void irq_max_interrupts(T *t)
{
    REQUIRE_API();
    const char *args[] = {"max_interrupts=2"};
    guest *g = setup(t, 64, false, 1, args, 1);
    if (!g)
        return;
    reset_work();
    CHECK_EQ(api.register_interrupt("alpha", irq_step, &wa), 0);
    CHECK_EQ(api.register_interrupt("beta", irq_step, &wb), 0);
    CHECK_EQ(api.register_interrupt("gamma", irq_step, &wc), 0);
    CHECK(api.queue_interrupt("alpha"), "queue alpha");
    CHECK(api.queue_interrupt("beta"), "queue beta");
    CHECK(!api.queue_interrupt("gamma"), "queue gamma returned true with a full queue");
    CHECK(api.queue_interrupt("alpha"), "queue alpha again (pending) returned false");
    plain_trap(g);
    igloo_portal(g, 0, HC_SYSCALL_ENTER, 0, 0);
    CHECK_EQ(wa.runs, 1);
    CHECK_EQ(wb.runs, 1);
    CHECK_EQ(wc.runs, 0);
    CHECK(api.queue_interrupt("gamma"), "queue gamma after the window returned false");
}

/* The flag's page is not mapped when the work is queued: the write fails
 * quietly, and the flag is set at a trap after the page appears. */
static void irq_flag_unmapped_then_mapped(T *t)
{
    REQUIRE_API();
    SETUP(64, false, 1);
    reset_work();
    uint64_t f = guest_get_config(g)->flag_addr;
    guest_unmap(g, f, 8);
    CHECK_EQ(api.register_interrupt("alpha", irq_step, &wa), 0);
    CHECK(api.queue_interrupt("alpha"), "queue alpha");
    plain_trap(g);
    igloo_portal(g, 0, HC_SYSCALL_ENTER, 0, 0);
    CHECK_EQ(wa.runs, 0);
    guest_map(g, f, 8);
    plain_trap(g);
    CHECK_FLAG(1);
    igloo_portal(g, 0, HC_SYSCALL_ENTER, 0, 0);
    CHECK_EQ(wa.runs, 1);
    CHECK_FLAG(0);
}

/* Two vCPUs both saw the flag: the second PORTAL_INTERRUPT conversation
 * finds nothing pending and ends at its first trap; the work runs once. */
static void irq_two_interrupt_conversations(T *t)
{
    REQUIRE_API();
    SETUP(64, false, 2);
    reset_work();
    wa.write_addr = kdata(g) + 0x200;
    wa.write_value = 0x5151;
    CHECK_EQ(api.register_interrupt("alpha", irq_step, &wa), 0);
    CHECK(api.queue_interrupt("alpha"), "queue alpha");
    plain_trap(g);
    CHECK_FLAG(1);
    uint64_t f = guest_get_config(g)->flag_addr;
    gconv *first = guest_conv_start(g, 0, HC_PORTAL_INTERRUPT, f, 0);
    gconv *second = guest_conv_start(g, 1, HC_PORTAL_INTERRUPT, f, 0);
    bool first_done = guest_conv_step(first);        /* takes the pending work */
    bool second_done = guest_conv_step(second);      /* nothing left */
    uint32_t second_op = t_last_trap(t)->op;
    int steps = 0;
    while (!first_done && steps++ < 10)
        first_done = guest_conv_step(first);
    guest_conv_free(first);
    guest_conv_free(second);
    CHECK(second_done, "the second interrupt conversation did not end at its first trap");
    CHECK_EQ(second_op, 0);
    CHECK(first_done, "the first interrupt conversation did not end");
    CHECK_EQ(wa.runs, 1);
    CHECK_EQ(guest_get_u64(g, kdata(g) + 0x200), 0x5151);
    CHECK_FLAG(0);
}

/* The install budget belongs to interrupt work: attached work gets none. */
static portal_step take_budget_step(void *userdata, portal_conversation *conv,
                                    const portal_response *response, portal_command *command,
                                    uint64_t *result)
{
    (void)response;
    (void)command;
    uint32_t *seen = userdata;
    seen[0] = conv->install_budget;
    seen[1] = api.take_install_budget(conv, 5);
    seen[2] = 1;
    *result = 0;
    return PORTAL_STEP_FINISH;
}

static void irq_budget_outside_interrupt(T *t)
{
    REQUIRE_API();
    SETUP(64, false, 1);
    static uint32_t seen[3];
    memset(seen, 0, sizeof seen);
    CHECK_EQ(api.attach(HC_SYSCALL_ENTER, take_budget_step, seen), 0);
    igloo_portal(g, 0, HC_SYSCALL_ENTER, 0, 0);
    CHECK_EQ(seen[2], 1);
    CHECK_EQ(seen[0], 0);
    CHECK_EQ(seen[1], 0);
}

const scenario scenarios_interrupts[] = {
    {"irq_queue_before_flag", irq_queue_before_flag, false},
    {"irq_module_init_drain", irq_module_init_drain, false},
    {"irq_queue_order", irq_queue_order, false},
    {"irq_flag_bytes_le64", irq_flag_bytes_le64, false},
    {"irq_flag_bytes_be64", irq_flag_bytes_be64, false},
    {"irq_flag_bytes_le32", irq_flag_bytes_le32, false},
    {"irq_flag_bytes_be32", irq_flag_bytes_be32, false},
    {"irq_dedup_and_requeue", irq_dedup_and_requeue, false},
    {"irq_install_budget_default", irq_install_budget_default, false},
    {"irq_install_budget_arg", irq_install_budget_arg, false},
    {"irq_later_registration_wins", irq_later_registration_wins, false},
    {"irq_max_interrupts", irq_max_interrupts, false},
    {"irq_flag_unmapped_then_mapped", irq_flag_unmapped_then_mapped, false},
    {"irq_two_interrupt_conversations", irq_two_interrupt_conversations, false},
    {"irq_budget_outside_interrupt", irq_budget_outside_interrupt, false},
    {NULL, NULL, false},
};
