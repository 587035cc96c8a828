/*
 * checks.c - the host side of the Linux guest test: an analysis module in C
 * (include/portal/portal.h, include/portal/operations.h) that exercises
 * every operation the guest module serves, against a real Linux kernel, and
 * prints what it got as "host: ..." lines on standard error.
 * Tests/guests/linux/test.sh compares those lines with the guest's own view
 * ("view: ..." lines on its console).
 *
 * Built as an SDK user builds a module (cc -shared -fPIC against the
 * headers, -lportal) and loaded by libportal.so itself:
 *
 *   -plugin .build/debug/libportal.so,load=Tests/guests/linux/build/amd64/liblinux-checks.so
 *
 * Its argument is empty, or handoff=NAME: then the sequence does not end
 * the run itself but queues the interrupt NAME (another module's work, the
 * demonstration module's module_arg=operations), which writes
 * /tmp/portal-done when it is finished. List replies (OSI_PROC_ALL,
 * OSI_MAPPINGS, READ_FDS), OSI_PROC, OSI_PROC_MEM, VFS_OPEN and VFS_READ are
 * decoded with operations.h's decoders and paging cursors.
 *
 * What runs where:
 *   - 0x1338 (syscall enter; execve, openat, sethostname): every event reads
 *     its struct syscall_event and counts the vCPU it came on. The first
 *     openat of the probe path by portal-mapper (guest mapper.c) runs the
 *     whole check sequence in that process's context, where its user memory
 *     is the current task's; it ends by writing /tmp/portal-done (or by the
 *     handoff), which lets the guest power off. execve and sethostname
 *     events print their arguments; sethostname prints the vCPU counts,
 *     cuts "portal-guest" to "portal" (rewrites the length argument) and
 *     skips "skip-me" (skip = 1, retval = 0).
 *   - 0x133c (process exit): prints pid, name and wait status.
 *   - the "whoami" interrupt, queued at init (it runs in the module's first
 *     interrupt conversation, in insmod) and by the check sequence (it runs
 *     when a user task next enters or leaves a syscall): prints whether it
 *     ran in a user task (OSI_PROC of the current task).
 *
 * Every check prints its values; a check that cannot go on prints
 * "host: FAIL <what>: <why>" and the sequence still ends by writing
 * /tmp/portal-done, so that the guest does not wait for its timeout.
 */
#include <portal/operations.h>
#include <portal/portal.h>

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

PORTAL_ANALYSIS_MODULE;

#define PROBE_PATH "/tmp/portal-probe-path-across-a-page"
#define HOST_FILE "/tmp/portal-host-file"
#define HOST_TEXT "written by the host\n"
#define DONE_FILE "/tmp/portal-done"
#define DONE_TEXT "checks finished"
#define PAGE 4096u
#define MAX_VCPUS 8

/* Op numbers, from the op table in use (portal_op), resolved once at init. */
static struct {
    uint32_t read, write, read_str, read_ptr_array, exec, osi_proc, osi_proc_handles,
        osi_proc_all, osi_mappings, osi_proc_mem, osi_proc_exe, read_procargs,
        read_procenv, read_fds, read_time, read_file, write_file, kallsyms_lookup,
        vfs_open, vfs_read, vfs_close, copy_buf_guest;
} op;

static atomic_uint events_on_vcpu[MAX_VCPUS];
static atomic_bool checks_started;
static atomic_uint interrupt_runs;

/* Little-endian fields of a reply. */
static uint64_t u64_at(const uint8_t *data, size_t offset)
{
    uint64_t value;
    memcpy(&value, data + offset, 8);
    return value;
}

static uint32_t u32_at(const uint8_t *data, size_t offset)
{
    uint32_t value;
    memcpy(&value, data + offset, 4);
    return value;
}

/* A NUL-terminated string at offset of a reply of size bytes, bounded. */
static void string_at(const portal_response *response, size_t offset, char *out, size_t limit)
{
    size_t length = 0;
    while (offset + length < response->size && length + 1 < limit && response->data[offset + length])
        length++;
    memcpy(out, response->data + offset, length);
    out[length] = '\0';
}

/* One "host: ..." line on standard error (test.sh reads them). */
static void __attribute__((format(printf, 1, 2))) say(const char *format, ...)
{
    va_list arguments;
    char line[1024];
    va_start(arguments, format);
    vsnprintf(line, sizeof(line), format, arguments);
    va_end(arguments);
    fprintf(stderr, "host: %s\n", line);
    fflush(stderr);
}

static const char *code_name(uint32_t code)
{
    switch (code) {
    case PORTAL_RESP_NONE: return "NONE";
    case PORTAL_RESP_READ_OK: return "READ_OK";
    case PORTAL_RESP_READ_FAIL: return "READ_FAIL";
    case PORTAL_RESP_READ_PARTIAL: return "READ_PARTIAL";
    case PORTAL_RESP_WRITE_OK: return "WRITE_OK";
    case PORTAL_RESP_WRITE_FAIL: return "WRITE_FAIL";
    case PORTAL_RESP_READ_NUM: return "READ_NUM";
    default: return "?";
    }
}

static void ask(portal_command *command, uint32_t operation, uint32_t pid, uint64_t addr,
                int64_t size, const void *data, size_t data_length)
{
    command->op = operation;
    command->pid = pid;
    command->addr = addr;
    command->size = size;
    command->data = data;
    command->data_length = data_length;
}

/* ---- the check sequence, in portal-mapper's context ---- */

/* What the sequence remembers between its steps (one sequence at a time). */
static struct {
    uint64_t probe, mapper_pid, start_stack, daemon_pid;
    portal_list_cursor cursor;
    uint32_t handle;
    char passwd_head[80];
    uint8_t exec_payload[128];
    size_t exec_length;
    uint8_t write_payload[128];
    size_t write_length;
    uint64_t copy_address, copy_done, copy_sent, copy_equal;
    int copy_writes_failed;
} sequence;

/* COPY_BUF_GUEST of more than a region: copy_bytes[i] = i * 13 + i / 256. */
#define COPY_TOTAL 10000u
#define COPY_CHUNK (PAGE - 24u)
static uint8_t copy_bytes[COPY_TOTAL];

/* The length of the next WRITE or READ of copy_bytes: a region's worth, or
 * what is left after sequence.copy_done. */
static uint64_t copy_next_chunk(void)
{
    uint64_t left = COPY_TOTAL - sequence.copy_done;
    return left < COPY_CHUNK ? left : COPY_CHUNK;
}

/* Asks for the next chunk of copy_bytes to be written into the guest's buffer. */
static void ask_next_copy_write(portal_command *command)
{
    sequence.copy_sent = copy_next_chunk();
    ask(command, op.write, 0, sequence.copy_address + sequence.copy_done, (int64_t)sequence.copy_sent,
        copy_bytes + sequence.copy_done, sequence.copy_sent);
}

enum {
    S_READ_STR_ACROSS = 10, S_READ_UNMAPPED, S_READ_INTO_UNMAPPED, S_WRITE_USER,
    S_READ_BACK, S_TIME, S_KALLSYMS_TEXT, S_KALLSYMS, S_BANNER, S_PROC_ALL, S_PROC, S_MAPPINGS,
    S_PROC_MEM, S_PROC_EXE, S_PROCARGS, S_PTR_ARRAY, S_PROCENV, S_FDS, S_CWD,
    S_READ_FILE, S_WRITE_FILE, S_READ_FILE_BACK, S_VFS_OPEN, S_VFS_READ, S_VFS_CLOSE,
    S_EXEC, S_UNSERVED_OP, S_COPY_BUF, S_COPY_WRITE, S_COPY_READ, S_FINISHED,
};

/* A conversation's own state (PORTAL_STATE_SIZE bytes): events on one vCPU can interleave. */
struct event_state {
    int step;
    char name[16];
    uint64_t arg1, arg2, pid;
};
_Static_assert(sizeof(struct event_state) <= PORTAL_STATE_SIZE, "event state too big");

static void build_payloads(void)
{
    static const char exec_strings[] = "/bin/busybox\0sh\0-c\0exit 3\0\0PATH=/bin\0\0";
    memcpy(sequence.exec_payload, exec_strings, sizeof(exec_strings) - 1);
    sequence.exec_length = sizeof(exec_strings) - 1;
    size_t path_length = strlen(HOST_FILE) + 1;
    memcpy(sequence.write_payload, HOST_FILE, path_length);
    memcpy(sequence.write_payload + path_length, HOST_TEXT, strlen(HOST_TEXT));
    sequence.write_length = path_length + strlen(HOST_TEXT);
    for (uint32_t i = 0; i < COPY_TOTAL; i++)
        copy_bytes[i] = (uint8_t)(i * 13 + i / 256);
}

static uint8_t done_payload[64];
static size_t done_length;

/* The interrupt that takes over at the end of the sequence (handoff=NAME), or "". */
static char handoff[64];

/*
 * Ends the sequence: hands over to the handoff interrupt, whose work writes
 * /tmp/portal-done, or writes it here (also when the handoff cannot be queued).
 */
static portal_step end_run(struct event_state *state, portal_command *command, uint64_t *result)
{
    state->step = S_FINISHED;
    *result = 0;
    if (handoff[0] && portal_queue_interrupt(handoff)) {
        say("done, handed over to interrupt %s", handoff);
        return PORTAL_STEP_FINISH;
    }
    say("done");
    ask(command, op.write_file, 0, 0, (int64_t)strlen(DONE_TEXT), done_payload, done_length);
    return PORTAL_STEP_COMMAND;
}

/* A check that cannot go on: says why (the decoder's message) and ends the sequence. */
static portal_step give_up(struct event_state *state, const char *what, portal_conversation *conversation,
                           portal_command *command, uint64_t *result)
{
    say("FAIL %s: %s", what, conversation->error ? conversation->error : "no reason given");
    return end_run(state, command, result);
}

/* Runs one step of the check sequence: handles the answer to step - 1's command, asks the next. */
static portal_step check_sequence(portal_conversation *conversation, struct event_state *state,
                                  const portal_response *response, portal_command *command, uint64_t *result)
{
    char text[600];
    int step = state->step;
    state->step++;
    switch (step) {
    case S_READ_STR_ACROSS: {
        uint64_t page_end = (sequence.probe | (PAGE - 1)) + 1;
        string_at(response, 0, text, sizeof(text));
        say("read_str across a page: %s, %llu bytes, %llu of them before the page end: %s",
            code_name(response->code), (unsigned long long)response->size,
            (unsigned long long)(page_end - sequence.probe), text);
        /* The page after the one the string ends in is unmapped. */
        ask(command, op.read, 0, page_end + PAGE, 64, NULL, 0);
        return PORTAL_STEP_COMMAND;
    }
    case S_READ_UNMAPPED: {
        uint64_t unmapped = ((sequence.probe | (PAGE - 1)) + 1) + PAGE;
        say("read unmapped user page: %s, %llu bytes", code_name(response->code),
            (unsigned long long)response->size);
        ask(command, op.read, 0, unmapped - 100, 256, NULL, 0);
        return PORTAL_STEP_COMMAND;
    }
    case S_READ_INTO_UNMAPPED: {
        size_t ps = 0;
        for (size_t i = 0; i < response->size; i++)
            ps += response->data[i] == 'p';
        say("read running into the unmapped page: %s, %llu bytes, %zu of them 'p'",
            code_name(response->code), (unsigned long long)response->size, ps);
        ask(command, op.write, 0, sequence.probe - 16, 4, "HOST", 4);
        return PORTAL_STEP_COMMAND;
    }
    case S_WRITE_USER:
        say("write user memory: %s", code_name(response->code));
        ask(command, op.read, 0, sequence.probe - 16, 4, NULL, 0);
        return PORTAL_STEP_COMMAND;
    case S_READ_BACK:
        say("read back: %s, %.*s", code_name(response->code), (int)(response->size > 4 ? 4 : response->size),
            (const char *)response->data);
        ask(command, op.read_time, 0, 0, 0, NULL, 0);
        return PORTAL_STEP_COMMAND;
    case S_TIME:
        say("read_time: %s, %llu", code_name(response->code), (unsigned long long)response->size);
        ask(command, op.kallsyms_lookup, 0, 0, 0, "do_exit", sizeof("do_exit"));
        return PORTAL_STEP_COMMAND;
    case S_KALLSYMS_TEXT:
        say("kallsyms_lookup do_exit: %s, %016llx", code_name(response->code), (unsigned long long)response->size);
        ask(command, op.kallsyms_lookup, 0, 0, 0, "linux_banner", sizeof("linux_banner"));
        return PORTAL_STEP_COMMAND;
    case S_KALLSYMS:
        say("kallsyms_lookup linux_banner: %s, %016llx", code_name(response->code),
            (unsigned long long)response->size);
        /* Kernels without CONFIG_KALLSYMS_ALL (Debian's arm64) list no data symbols. */
        if (response->code == PORTAL_RESP_READ_NUM && response->size != 0) {
            say("banner read with: READ_STR of linux_banner");
            ask(command, op.read_str, 0, response->size, 0, NULL, 0);
        } else {
            say("banner read with: READ_FILE of /proc/version");
            ask(command, op.read_file, 0, 0, 0, "/proc/version", sizeof("/proc/version"));
        }
        return PORTAL_STEP_COMMAND;
    case S_BANNER: {
        string_at(response, 0, text, sizeof(text));
        char *newline = strchr(text, '\n');
        if (newline)
            *newline = '\0';
        say("banner: %s", text);
        memset(&sequence.cursor, 0, sizeof(sequence.cursor));
        ask(command, op.osi_proc_all, 0, 0, 0, NULL, 0);
        return PORTAL_STEP_COMMAND;
    }
    case S_PROC_ALL: {
        portal_process_record page[PORTAL_MAX_PROCESS_RECORDS];
        uint64_t at = sequence.cursor.next_addr;
        int count = portal_decode_processes(conversation, response, &sequence.cursor, page,
                                            PORTAL_MAX_PROCESS_RECORDS);
        if (count < 0)
            return give_up(state, "osi_proc_all", conversation, command, result);
        say("proc_all page at %llu: %d of %llu", (unsigned long long)at, count,
            (unsigned long long)sequence.cursor.total);
        for (int i = 0; i < count; i++) {
            say("ps %llu %llu %u %s", (unsigned long long)page[i].pid, (unsigned long long)page[i].parent_pid,
                page[i].uid, page[i].name);
            if (!strcmp(page[i].name, "nc"))
                sequence.daemon_pid = page[i].pid;
        }
        if (!sequence.cursor.done) {
            state->step = S_PROC_ALL;
            ask(command, op.osi_proc_all, 0, sequence.cursor.next_addr, 0, NULL, 0);
            return PORTAL_STEP_COMMAND;
        }
        ask(command, op.osi_proc, (uint32_t)sequence.mapper_pid, 0, 0, NULL, 0);
        return PORTAL_STEP_COMMAND;
    }
    case S_PROC: {
        portal_process_details details;
        if (portal_decode_process(conversation, response, &details) < 0)
            return give_up(state, "osi_proc", conversation, command, result);
        sequence.start_stack = details.fields[9];
        say("proc %llu ppid %llu uid %llu name %s map_count %llu", (unsigned long long)details.fields[2],
            (unsigned long long)details.fields[3], (unsigned long long)details.fields[21], details.name,
            (unsigned long long)details.fields[6]);
        memset(&sequence.cursor, 0, sizeof(sequence.cursor));
        ask(command, op.osi_mappings, (uint32_t)sequence.mapper_pid, 0, 0, NULL, 0);
        return PORTAL_STEP_COMMAND;
    }
    case S_MAPPINGS: {
        portal_mapping_record page[PORTAL_MAX_MAPPING_RECORDS];
        uint64_t at = sequence.cursor.next_addr;
        int count = portal_decode_mappings(conversation, response, &sequence.cursor, page,
                                           PORTAL_MAX_MAPPING_RECORDS);
        if (count < 0)
            return give_up(state, "osi_mappings", conversation, command, result);
        say("mappings page at %llu: %d of %llu", (unsigned long long)at, count,
            (unsigned long long)sequence.cursor.total);
        for (int i = 0; i < count; i++) {
            /* As /proc/PID/maps: the file offset of file mappings (inode != 0), 0 for the rest. */
            uint64_t offset = page[i].inode ? page[i].file_offset : 0;
            say("maps %08llx-%08llx %s %08llx%s%s", (unsigned long long)page[i].start,
                (unsigned long long)page[i].end, page[i].permissions, (unsigned long long)offset,
                page[i].name[0] ? " " : "", page[i].name);
        }
        if (!sequence.cursor.done) {
            state->step = S_MAPPINGS;
            ask(command, op.osi_mappings, (uint32_t)sequence.mapper_pid, sequence.cursor.next_addr, 0, NULL, 0);
            return PORTAL_STEP_COMMAND;
        }
        ask(command, op.osi_proc_mem, (uint32_t)sequence.mapper_pid, 0, 0, NULL, 0);
        return PORTAL_STEP_COMMAND;
    }
    case S_PROC_MEM: {
        uint64_t start, end;
        if (portal_decode_heap(conversation, response, &start, &end) == 0)
            say("proc_mem start_brk %08llx brk %08llx", (unsigned long long)start, (unsigned long long)end);
        else
            say("FAIL osi_proc_mem: %s", conversation->error);
        ask(command, op.osi_proc_exe, (uint32_t)sequence.mapper_pid, 0, 0, NULL, 0);
        return PORTAL_STEP_COMMAND;
    }
    case S_PROC_EXE:
        string_at(response, 0, text, sizeof(text));
        say("exe %s (%s, %llu bytes)", text, code_name(response->code), (unsigned long long)response->size);
        ask(command, op.read_procargs, (uint32_t)sequence.mapper_pid, 0, 0, NULL, 0);
        return PORTAL_STEP_COMMAND;
    case S_PROCARGS:
        string_at(response, 0, text, sizeof(text));
        say("procargs %s", text);
        /* argv[] follows argc at the initial stack pointer. */
        ask(command, op.read_ptr_array, 0, sequence.start_stack + 8, 0, NULL, 0);
        return PORTAL_STEP_COMMAND;
    case S_PTR_ARRAY: {
        size_t offset = 0;
        size_t used = 0;
        text[0] = '\0';
        while (offset < response->size) {
            char argument[200];
            string_at(response, offset, argument, sizeof(argument));
            used += snprintf(text + used, sizeof(text) - used, "%s|", argument);
            offset += strlen(argument) + 1;
            if (used >= sizeof(text))
                break;
        }
        say("argv %s", text);
        ask(command, op.read_procenv, (uint32_t)sequence.mapper_pid, 0, 0, NULL, 0);
        return PORTAL_STEP_COMMAND;
    }
    case S_PROCENV: {
        size_t offset = 0;
        while (offset < response->size) {
            string_at(response, offset, text, sizeof(text));
            size_t length = strlen(text);
            if (length == 0)
                break;
            /* Split at the first '=': values may contain more. */
            char *equals = strchr(text, '=');
            if (equals) {
                *equals = '\0';
                say("environ %s=%s (name %s, value %s)", text, equals + 1, text, equals + 1);
            } else {
                say("environ %s (no '=')", text);
            }
            offset += length + 1;
        }
        memset(&sequence.cursor, 0, sizeof(sequence.cursor));
        ask(command, op.read_fds, (uint32_t)sequence.daemon_pid, 0, 0, NULL, 0);
        return PORTAL_STEP_COMMAND;
    }
    case S_FDS: {
        portal_fd_record page[PORTAL_MAX_FD_RECORDS];
        int count = portal_decode_fds(conversation, response, &sequence.cursor, page, PORTAL_MAX_FD_RECORDS);
        if (count < 0)
            return give_up(state, "read_fds", conversation, command, result);
        for (int i = 0; i < count; i++)
            say("fd %d %s", page[i].fd, page[i].path);
        if (!sequence.cursor.done) {
            state->step = S_FDS;
            ask(command, op.read_fds, (uint32_t)sequence.daemon_pid, sequence.cursor.next_addr, 0, NULL, 0);
            return PORTAL_STEP_COMMAND;
        }
        ask(command, op.read_fds, (uint32_t)sequence.daemon_pid, (uint64_t)-100, 0, NULL, 0);
        return PORTAL_STEP_COMMAND;
    }
    case S_CWD: {
        portal_list_cursor fresh = {0};
        portal_fd_record record[1];
        if (portal_decode_fds(conversation, response, &fresh, record, 1) == 1)
            say("cwd %d %s", record[0].fd, record[0].path);
        else
            say("FAIL cwd: %s", conversation->error ? conversation->error : "no record");
        ask(command, op.read_file, 0, 0, 0, "/etc/passwd", sizeof("/etc/passwd"));
        return PORTAL_STEP_COMMAND;
    }
    case S_READ_FILE: {
        string_at(response, 0, text, sizeof(text));
        memcpy(sequence.passwd_head, text, sizeof(sequence.passwd_head) - 1);
        char *line = text;
        for (int i = 0; i < 3 && line && *line; i++) {
            char *end = strchr(line, '\n');
            if (end)
                *end = '\0';
            say("passwd %s", line);
            line = end ? end + 1 : NULL;
        }
        ask(command, op.write_file, 0, 0, (int64_t)strlen(HOST_TEXT), sequence.write_payload,
            sequence.write_length);
        return PORTAL_STEP_COMMAND;
    }
    case S_WRITE_FILE:
        say("write_file %s: %s %llu", HOST_FILE, code_name(response->code), (unsigned long long)response->size);
        ask(command, op.read_file, 0, 0, 0, HOST_FILE, sizeof(HOST_FILE));
        return PORTAL_STEP_COMMAND;
    case S_READ_FILE_BACK:
        string_at(response, 0, text, sizeof(text));
        say("read_file back: %s %llu bytes, %s", code_name(response->code), (unsigned long long)response->size,
            strcmp(text, HOST_TEXT) ? "different" : "the same");
        ask(command, op.vfs_open, 0, 0, 0, "/etc/passwd", sizeof("/etc/passwd"));
        return PORTAL_STEP_COMMAND;
    case S_VFS_OPEN: {
        portal_vfs_open opened;
        if (portal_decode_vfs_open(conversation, response, &opened) < 0) {
            say("FAIL vfs_open: %s", conversation->error);
            state->step = S_EXEC;
            ask(command, op.exec, 0, 1, 0, sequence.exec_payload, sequence.exec_length);
            return PORTAL_STEP_COMMAND;
        }
        sequence.handle = opened.handle;
        say("vfs_open /etc/passwd: error %d, handle slot %u, fs magic 0x%llx", opened.error,
            sequence.handle & 0xff, (unsigned long long)opened.fs_magic);
        ask(command, op.vfs_read, 0, sequence.handle, 16, NULL, 0);
        return PORTAL_STEP_COMMAND;
    }
    case S_VFS_READ: {
        portal_vfs_chunk chunk;
        if (portal_decode_vfs_read(conversation, response, 16, &chunk) == 0)
            say("vfs_read: error %d, %u bytes, eof %u, %s", chunk.error, chunk.length, chunk.end_of_file,
                chunk.length == 16 && !memcmp(chunk.bytes, sequence.passwd_head, 16)
                    ? "the same as read_file's" : "different from read_file's");
        else
            say("FAIL vfs_read: %s", conversation->error);
        ask(command, op.vfs_close, 0, sequence.handle, 0, NULL, 0);
        return PORTAL_STEP_COMMAND;
    }
    case S_VFS_CLOSE:
        say("vfs_close: %s, error %d", code_name(response->code),
            response->size >= 4 ? (int)u32_at(response->data, 0) : 1);
        ask(command, op.exec, 0, 1, 0, sequence.exec_payload, sequence.exec_length);
        return PORTAL_STEP_COMMAND;
    case S_EXEC:
        say("exec /bin/busybox sh -c 'exit 3': %s, status %lld", code_name(response->code),
            (long long)response->size);
        portal_queue_interrupt("whoami");
        ask(command, op.osi_proc_handles, 0, 0, 0, NULL, 0);
        return PORTAL_STEP_COMMAND;
    case S_UNSERVED_OP:
        say("osi_proc_handles (not served by this module): %s", code_name(response->code));
        /* A kernel buffer of COPY_TOTAL bytes: the total length, unclamped,
         * and the first region of them; WRITEs of the rest, READs back. */
        sequence.copy_done = sequence.copy_equal = 0;
        sequence.copy_writes_failed = 0;
        sequence.copy_sent = COPY_CHUNK;
        ask(command, op.copy_buf_guest, 0, 0, COPY_TOTAL, copy_bytes, COPY_CHUNK);
        command->flags = PORTAL_COMMAND_TOTAL_SIZE;
        return PORTAL_STEP_COMMAND;
    case S_COPY_BUF:
        if (response->code != PORTAL_RESP_READ_NUM || response->size == 0) {
            say("copy_buf_guest: %s, no buffer", code_name(response->code));
            return end_run(state, command, result);
        }
        sequence.copy_address = response->size;
        sequence.copy_done = sequence.copy_sent;
        ask_next_copy_write(command);
        return PORTAL_STEP_COMMAND;
    case S_COPY_WRITE:
        sequence.copy_writes_failed += response->code != PORTAL_RESP_WRITE_OK;
        sequence.copy_done += sequence.copy_sent;
        if (sequence.copy_done < COPY_TOTAL) {
            state->step = S_COPY_WRITE;
            ask_next_copy_write(command);
            return PORTAL_STEP_COMMAND;
        }
        sequence.copy_done = 0;
        sequence.copy_sent = COPY_CHUNK;
        ask(command, op.read, 0, sequence.copy_address, COPY_CHUNK, NULL, 0);
        return PORTAL_STEP_COMMAND;
    case S_COPY_READ:
        if (response->code == PORTAL_RESP_READ_OK && response->size == sequence.copy_sent)
            for (uint64_t i = 0; i < response->size; i++)
                sequence.copy_equal += response->data[i] == copy_bytes[sequence.copy_done + i];
        sequence.copy_done += sequence.copy_sent;
        if (sequence.copy_done < COPY_TOTAL) {
            state->step = S_COPY_READ;
            sequence.copy_sent = copy_next_chunk();
            ask(command, op.read, 0, sequence.copy_address + sequence.copy_done, (int64_t)sequence.copy_sent, NULL, 0);
            return PORTAL_STEP_COMMAND;
        }
        /* Top byte 0xff: the kernel half, with 4- or 5-level paging (QEMU's
         * -cpu max gives x86_64 LA57) and on arm64. */
        say("copy_buf_guest %u bytes at a %s address, the rest by WRITE (%d failed), read back: %llu bytes equal",
            COPY_TOTAL, sequence.copy_address >> 56 == 0xff ? "kernel" : "user",
            sequence.copy_writes_failed, (unsigned long long)sequence.copy_equal);
        return end_run(state, command, result);
    default:
        *result = 0;
        return PORTAL_STEP_FINISH;
    }
}

/* ---- events ---- */

enum { E_READ_EVENT = 0, E_READ_NAME = 1, E_READ_ARGUMENT = 2, E_REWRITTEN, E_RETVAL_WRITTEN, E_SKIP_WRITTEN };

/* What the sethostname events get written back (syscall_event.args[1], retval, skip). */
static const uint64_t rewritten_length = 6;
static const int64_t skipped_retval = 0;
static const uint8_t skip_true = 1;

static portal_step syscall_enter(void *userdata, portal_conversation *conversation,
                                 const portal_response *response, portal_command *command,
                                 uint64_t *result)
{
    (void)userdata;
    struct event_state *state = conversation->state;
    uint32_t vcpu = conversation->call.vcpu < MAX_VCPUS ? conversation->call.vcpu : MAX_VCPUS - 1;
    *result = 0;
    if (state->step >= S_READ_STR_ACROSS)
        return check_sequence(conversation, state, response, command, result);
    switch (state->step) {
    case E_READ_EVENT:
        state->step = E_READ_NAME;
        ask(command, op.read, 0, conversation->call.args[0], 160, NULL, 0);
        return PORTAL_STEP_COMMAND;
    case E_READ_NAME: {
        if (response->code != PORTAL_RESP_READ_OK || response->size != 160) {
            conversation->error = "the syscall event could not be read";
            return PORTAL_STEP_FAIL;
        }
        atomic_fetch_add(&events_on_vcpu[vcpu], 1);
        state->arg1 = u64_at(response->data, 0);
        state->arg2 = u64_at(response->data, 8);
        state->pid = u64_at(response->data, 88);
        memcpy(state->name, response->data + 109, sizeof(state->name) - 1);
        state->name[sizeof(state->name) - 1] = '\0';
        state->step = E_READ_ARGUMENT;
        if (!strcmp(state->name, "openat")) {
            ask(command, op.read_str, 0, state->arg2, 0, NULL, 0);
            return PORTAL_STEP_COMMAND;
        }
        if (!strcmp(state->name, "execve")) {
            ask(command, op.read_str, 0, state->arg1, 0, NULL, 0);
            return PORTAL_STEP_COMMAND;
        }
        if (!strcmp(state->name, "sethostname")) {
            ask(command, op.read_str, 0, state->arg1, (int64_t)state->arg2, NULL, 0);
            return PORTAL_STEP_COMMAND;
        }
        return PORTAL_STEP_FINISH;
    }
    case E_REWRITTEN:
        say("sethostname: length rewritten to 6: %s", code_name(response->code));
        return PORTAL_STEP_FINISH;
    case E_RETVAL_WRITTEN:
        state->step = E_SKIP_WRITTEN;
        ask(command, op.write, 0, conversation->call.args[0] + 108, 1, &skip_true, 1);
        return PORTAL_STEP_COMMAND;
    case E_SKIP_WRITTEN:
        say("sethostname: skipped with retval 0: %s", code_name(response->code));
        return PORTAL_STEP_FINISH;
    default: {
        char text[300];
        const char *name = state->name;
        string_at(response, 0, text, sizeof(text));
        if (!strcmp(name, "execve")) {
            say("execve %s", text);
        } else if (!strcmp(name, "sethostname")) {
            say("sethostname %s", text);
            say("syscall events on vCPU 0: %s, on vCPU 1: %s",
                atomic_load(&events_on_vcpu[0]) ? "some" : "none",
                atomic_load(&events_on_vcpu[1]) ? "some" : "none");
            /* The event's arguments and result go back to the guest. */
            if (!strcmp(text, "portal-guest")) {
                state->step = E_REWRITTEN;
                ask(command, op.write, 0, conversation->call.args[0] + 8, 8, &rewritten_length, 8);
                return PORTAL_STEP_COMMAND;
            }
            if (!strcmp(text, "skip-me")) {
                state->step = E_RETVAL_WRITTEN;
                ask(command, op.write, 0, conversation->call.args[0] + 80, 8, &skipped_retval, 8);
                return PORTAL_STEP_COMMAND;
            }
        } else if (!strcmp(text, PROBE_PATH) && !atomic_exchange(&checks_started, true)) {
            sequence.probe = state->arg2;
            sequence.mapper_pid = state->pid;
            state->step = S_READ_STR_ACROSS;
            ask(command, op.read_str, 0, sequence.probe, 0, NULL, 0);
            return PORTAL_STEP_COMMAND;
        }
        return PORTAL_STEP_FINISH;
    }
    }
}

static portal_step process_exit(void *userdata, portal_conversation *conversation,
                                const portal_response *response, portal_command *command,
                                uint64_t *result)
{
    (void)userdata;
    *result = 0;
    if (!response) {
        ask(command, op.read, 0, conversation->call.args[0], 48, NULL, 0);
        return PORTAL_STEP_COMMAND;
    }
    if (response->code != PORTAL_RESP_READ_OK || response->size != 48) {
        conversation->error = "the exit event could not be read";
        return PORTAL_STEP_FAIL;
    }
    char comm[17] = {0};
    memcpy(comm, response->data + 32, 16);
    if (!strcmp(comm, "sh") || !strcmp(comm, "busybox"))
        say("exit %s status %lld", comm, (long long)u64_at(response->data, 24));
    return PORTAL_STEP_FINISH;
}

/* Interrupt work: which task is current when the guest noticed the flag. */
static portal_step whoami(void *userdata, portal_conversation *conversation,
                          const portal_response *response, portal_command *command, uint64_t *result)
{
    (void)userdata;
    (void)conversation;
    *result = 0;
    if (!response) {
        ask(command, op.osi_proc, PORTAL_CURRENT_PID, 0, 0, NULL, 0);
        return PORTAL_STEP_COMMAND;
    }
    if (response->code == PORTAL_RESP_READ_OK && response->size >= 208) {
        char name[17];
        string_at(response, 208, name, sizeof(name));
        /* A user task has mappings; the module's polling thread has none. */
        say("interrupt ran in a user task: %s", u64_at(response->data, 48) > 0 ? "yes" : "no");
        if (atomic_fetch_add(&interrupt_runs, 1) == 0)
            say("first interrupt ran in %s (the module's load)", name);
    } else {
        say("interrupt ran: OSI_PROC of the current task answered %s", code_name(response->code));
    }
    return PORTAL_STEP_FINISH;
}

/* The entry point of an analysis module (libportal.so's load= calls it). */
__attribute__((visibility("default"))) int portal_analysis_init(const char *args)
{
    if (!strncmp(args, "handoff=", 8) && strlen(args + 8) > 0 && strlen(args + 8) < sizeof(handoff)) {
        strcpy(handoff, args + 8);
    } else if (args[0] != '\0') {
        fprintf(stderr, "host: expected no argument or handoff=NAME (an interrupt name), got \"%s\"\n", args);
        return 1;
    }
#define RESOLVE(field, name) \
    if ((op.field = portal_op(name)) == 0) { fprintf(stderr, "host: no op %s in the table\n", name); return -1; }
    RESOLVE(read, "READ") RESOLVE(write, "WRITE") RESOLVE(read_str, "READ_STR")
    RESOLVE(read_ptr_array, "READ_PTR_ARRAY") RESOLVE(exec, "EXEC") RESOLVE(osi_proc, "OSI_PROC")
    RESOLVE(osi_proc_handles, "OSI_PROC_HANDLES") RESOLVE(osi_proc_all, "OSI_PROC_ALL")
    RESOLVE(osi_mappings, "OSI_MAPPINGS") RESOLVE(osi_proc_mem, "OSI_PROC_MEM")
    RESOLVE(osi_proc_exe, "OSI_PROC_EXE") RESOLVE(read_procargs, "READ_PROCARGS")
    RESOLVE(read_procenv, "READ_PROCENV") RESOLVE(read_fds, "READ_FDS") RESOLVE(read_time, "READ_TIME")
    RESOLVE(read_file, "READ_FILE") RESOLVE(write_file, "WRITE_FILE")
    RESOLVE(kallsyms_lookup, "KALLSYMS_LOOKUP") RESOLVE(vfs_open, "VFS_OPEN")
    RESOLVE(vfs_read, "VFS_READ") RESOLVE(vfs_close, "VFS_CLOSE")
    RESOLVE(copy_buf_guest, "COPY_BUF_GUEST")
#undef RESOLVE
    build_payloads();
    memcpy(done_payload, DONE_FILE, sizeof(DONE_FILE));
    memcpy(done_payload + sizeof(DONE_FILE), DONE_TEXT, strlen(DONE_TEXT));
    done_length = sizeof(DONE_FILE) + strlen(DONE_TEXT);
    if (portal_attach(0x1338, syscall_enter, NULL) || portal_attach(0x133c, process_exit, NULL) ||
        portal_register_interrupt("whoami", whoami, NULL))
        return -1;
    /* Queued before the guest is up: runs in the module's first interrupt conversation. */
    portal_queue_interrupt("whoami");
    return 0;
}
