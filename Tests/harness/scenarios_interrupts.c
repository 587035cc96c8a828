/*
 * scenarios_interrupts.c - the interrupt calls of the C API (portal.h):
 * portal_register_interrupt, portal_queue_interrupt's true and false,
 * portal_take_install_budget and conversation->install_budget, with the
 * plugin arguments install_budget= and max_interrupts=. How the engine runs
 * interrupt work (PROTOCOL.md §5: the flag, windows, queue order) is tested
 * in Swift (Tests/PortalEngineTests/InterruptTests.swift, InterruptWindowTests.swift).
 */
#include "steps.h"

#include <string.h>

static irq_work wa, wb, wc;

/* init_plugin with `arg`, and work registered as "alpha", "beta", "gamma". */
static guest *setup_work(T *t, const char *arg)
{
    const char *args[] = {arg};
    guest *g = setup(t, 64, false, 1, args, 1);
    if (!g)
        return NULL;
    memset(&wa, 0, sizeof wa);
    memset(&wb, 0, sizeof wb);
    memset(&wc, 0, sizeof wc);
    if (api.register_interrupt("alpha", irq_step, &wa) != 0 ||
        api.register_interrupt("beta", irq_step, &wb) != 0 ||
        api.register_interrupt("gamma", irq_step, &wc) != 0) {
        t_fail(t, __LINE__, "portal_register_interrupt refused a name");
        return NULL;
    }
    return g;
}

/* A plain hypercall the plugin does not own raises the flag; the next
 * conversation checks it and runs the window first. */
static void run_window(guest *g)
{
    guest_hypercall(g, 0, HC_MODULE_BASE, 0, 0, 0, 0, NULL);
    igloo_portal(g, 0, HC_SYSCALL_ENTER, 0, 0);
}

/* install_budget=5, shared by the window: alpha takes 3 of 5, beta 2 of 3. */
static void irq_install_budget_arg(T *t)
{
    REQUIRE_API();
    guest *g = setup_work(t, "install_budget=5");
    if (!g)
        return;
    wa.budget_wanted = 3;
    wb.budget_wanted = 3;
    CHECK(api.queue_interrupt("alpha"), "queue alpha");
    CHECK(api.queue_interrupt("beta"), "queue beta");
    run_window(g);
    CHECK_EQ(wa.budget_before[0], 5);
    CHECK_EQ(wa.budget_got[0], 3);
    CHECK_EQ(wb.budget_before[0], 2);
    CHECK_EQ(wb.budget_got[0], 2);
}

/* max_interrupts=2: a third distinct name does not fit; a pending one
 * queued again is fine; a name nobody registered is refused. */
static void irq_max_interrupts(T *t)
{
    REQUIRE_API();
    guest *g = setup_work(t, "max_interrupts=2");
    if (!g)
        return;
    CHECK(!api.queue_interrupt("nobody"), "queue_interrupt of an unregistered name returned true");
    CHECK(api.queue_interrupt("alpha"), "queue alpha");
    CHECK(api.queue_interrupt("beta"), "queue beta");
    CHECK(!api.queue_interrupt("gamma"), "queue gamma returned true with a full queue");
    CHECK(api.queue_interrupt("alpha"), "queue alpha again (pending) returned false");
    run_window(g);
    CHECK_EQ(wa.runs, 1);
    CHECK_EQ(wb.runs, 1);
    CHECK_EQ(wc.runs, 0);
    CHECK(api.queue_interrupt("gamma"), "queue gamma after the window returned false");
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
    {"irq_install_budget_arg", irq_install_budget_arg, false},
    {"irq_max_interrupts", irq_max_interrupts, false},
    {"irq_budget_outside_interrupt", irq_budget_outside_interrupt, false},
    {NULL, NULL, false},
};
