/*
 * scenarios_operations.c - the decoders of portal/operations.h from C step
 * functions, against the mock guest's OSI fixtures in all four layouts:
 * pagination boundaries (72, 73 and 145 processes; 28 and 29 mappings; fds
 * with gaps over two pages), exact records, and hostile replies failing the
 * conversation with the decoder's message.
 */
#include "steps.h"

#include <stdio.h>
#include <string.h>

enum list_kind { LIST_PROCESSES, LIST_MAPPINGS, LIST_FDS, LIST_CWD, ONE_PROCESS };

/* What a list step collected, kept in host memory for the checks. */
typedef struct listing {
    enum list_kind kind;
    uint32_t op;
    uint32_t pid;
    int pages;
    int count;
    portal_process_record processes[200];
    portal_mapping_record mappings[64];
    char mapping_names[64][32];
    int32_t fds[300];
    char fd_paths[300][32];
    portal_process_details details;
    uint64_t conversation;   /* the conversation's id, for its trap records */
} listing;

static listing L;

/* One list, page by page: the cursor lives in the conversation's state. */
static portal_step list_step(void *userdata, portal_conversation *conv,
                             const portal_response *response, portal_command *command,
                             uint64_t *result)
{
    listing *l = userdata;
    portal_list_cursor *cursor = conv->state;
    if (response != NULL) {
        int n = -1;
        l->pages++;
        if (l->kind == LIST_PROCESSES) {
            portal_process_record page[PORTAL_MAX_PROCESS_RECORDS];
            n = api.decode_processes(conv, response, cursor, page, PORTAL_MAX_PROCESS_RECORDS);
            for (int i = 0; i < n && l->count < 200; i++)
                l->processes[l->count++] = page[i];
        } else if (l->kind == LIST_MAPPINGS) {
            portal_mapping_record page[PORTAL_MAX_MAPPING_RECORDS];
            n = api.decode_mappings(conv, response, cursor, page, PORTAL_MAX_MAPPING_RECORDS);
            for (int i = 0; i < n && l->count < 64; i++) {
                /* Names point into the response: copied before the step returns. */
                snprintf(l->mapping_names[l->count], 32, "%s", page[i].name);
                l->mappings[l->count++] = page[i];
            }
        } else if (l->kind == LIST_FDS || l->kind == LIST_CWD) {
            portal_fd_record page[PORTAL_MAX_FD_RECORDS];
            n = api.decode_fds(conv, response, cursor, page, PORTAL_MAX_FD_RECORDS);
            for (int i = 0; i < n && l->count < 300; i++) {
                snprintf(l->fd_paths[l->count], 32, "%s", page[i].path);
                l->fds[l->count++] = page[i].fd;
            }
        } else {
            n = api.decode_process(conv, response, &l->details);
            if (n == 0) {
                *result = l->details.fields[2];
                return PORTAL_STEP_FINISH;
            }
        }
        if (n < 0)
            return PORTAL_STEP_FAIL;   /* conv->error: the decoder's message */
        if (cursor->done) {
            *result = (uint64_t)l->count;
            return PORTAL_STEP_FINISH;
        }
    }
    command->op = l->op;
    command->pid = l->pid;
    command->addr = l->kind == LIST_CWD ? (uint64_t)(int64_t)-100 : cursor->next_addr;
    return PORTAL_STEP_COMMAND;
}

/* Runs one listing conversation of `kind` for `pid`; returns the hypercall's result. */
static uint64_t run_listing(guest *g, enum list_kind kind, const char *op, uint32_t pid)
{
    memset(&L, 0, sizeof L);
    L.kind = kind;
    L.op = api.op(op);
    L.pid = pid;
    api.attach(HC_SYSCALL_ENTER, list_step, &L);
    return converse(g, 0, HC_SYSCALL_ENTER, 0, 0, &L.conversation);
}

#define REQUIRE_DECODERS()                                                    \
    CHECK(api.decode_processes && api.decode_mappings && api.decode_fds &&   \
              api.decode_process && api.decode_heap && api.decode_vfs_open && \
              api.decode_vfs_read,                                            \
          "the library does not export the decoders of operations.h")

static int32_t gap_fds[130];

static void all_operations(T *t, unsigned bits, bool big_endian)
{
    REQUIRE_API();
    REQUIRE_DECODERS();
    SETUP(bits, big_endian, 1);

    /* Processes: 72 fit one page exactly, 73 and 145 need 2 and 3. */
    static const int counts[] = {72, 73, 145};
    for (int c = 0; c < 3; c++) {
        guest_set_osi(g, counts[c], 0, NULL, 0);
        CHECK_EQ(run_listing(g, LIST_PROCESSES, "OSI_PROC_ALL", 0), counts[c]);
        CHECK_EQ(L.count, counts[c]);
        CHECK_EQ(L.pages, (counts[c] + 71) / 72);
        for (int i = 0; i < counts[c]; i++) {
            const portal_process_record *p = &L.processes[i];
            char name[16];
            guest_osi_process_name(i, name);
            CHECK(p->pid == 100 + (uint64_t)i && p->parent_pid == (i ? 100u : 0u) &&
                      p->create_time == 1000000 * ((uint64_t)i + 1) + 7 && p->uid == (uint32_t)i &&
                      p->gid == 2 * (uint32_t)i && p->effective_uid == 0 && p->effective_gid == 7 &&
                      strcmp(p->name, name) == 0,
                  "%u-bit %s: process %d of %d is pid %llu '%s', expected pid %d '%s'", bits,
                  big_endian ? "BE" : "LE", i, counts[c], (unsigned long long)p->pid, p->name,
                  100 + i, name);
        }
    }

    /* One process: all 26 fields and the name. */
    CHECK_EQ(run_listing(g, ONE_PROCESS, "OSI_PROC", 101), 101);
    for (uint64_t k = 0; k < 26; k++)
        CHECK_EQ(L.details.fields[k], k == 2 ? 101 : k == 4 ? 208 : 101u << 8 | k);
    CHECK(strcmp(L.details.name, "busybox-applet-") == 0, "OSI_PROC name '%s'", L.details.name);

    /* Mappings: 28 fit one page, 29 need two. */
    for (int count = 28; count <= 29; count++) {
        guest_set_osi(g, 1, count, NULL, 0);
        CHECK_EQ(run_listing(g, LIST_MAPPINGS, "OSI_MAPPINGS", 100), count);
        CHECK_EQ(L.pages, count == 28 ? 1 : 2);
        for (int i = 0; i < count; i++) {
            const portal_mapping_record *m = &L.mappings[i];
            uint64_t start = 0x400000 + (uint64_t)i * 0x10000;
            CHECK(m->start == start && m->end == start + 0x1000 * ((uint64_t)i + 1) &&
                      m->file_offset == (uint64_t)i * 0x1000 && m->flags == (i % 2 ? 3u : 5u) &&
                      strcmp(m->permissions, i % 2 ? "rw-p" : "r-xp") == 0 && m->device_major == 8 &&
                      m->device_minor == 1 && m->inode == 100 + (uint64_t)i &&
                      strcmp(L.mapping_names[i], guest_osi_mapping_name(i)) == 0,
                  "mapping %d of %d: %#llx-%#llx %s '%s'", i, count, (unsigned long long)m->start,
                  (unsigned long long)m->end, m->permissions, L.mapping_names[i]);
        }
    }

    /* fds 0, 1, 2, then every third from 5: 130 with gaps, 127 on the first
     * page; the second page starts at the resume fd the reply names. */
    int nfds = 0;
    gap_fds[nfds++] = 0;
    gap_fds[nfds++] = 1;
    gap_fds[nfds++] = 2;
    while (nfds < 130)
        gap_fds[nfds] = 5 + 3 * (nfds - 3), nfds++;
    guest_set_osi(g, 1, 0, gap_fds, nfds);
    CHECK_EQ(run_listing(g, LIST_FDS, "READ_FDS", 0), 130);
    CHECK_EQ(L.pages, 2);
    for (int i = 0; i < 130; i++) {
        char path[32];
        guest_fd_path(gap_fds[i], path);
        CHECK(L.fds[i] == gap_fds[i] && strcmp(L.fd_paths[i], path) == 0, "fd record %d: %d '%s'",
              i, L.fds[i], L.fd_paths[i]);
    }
    size_t n;
    trap_record *tr = t_traps_of_conv(t, L.conversation, &n);
    CHECK_EQ(n, 3);
    CHECK_HEADER(&tr[0], api.op("READ_FDS"), PORTAL_CURRENT_PID, 0, 0);
    CHECK_HEADER(&tr[1], api.op("READ_FDS"), PORTAL_CURRENT_PID, 5 + 3 * 124, 0);

    CHECK_EQ(run_listing(g, LIST_CWD, "READ_FDS", 0), 1);
    CHECK(L.fds[0] == -100 && strcmp(L.fd_paths[0], "/var/run/cwd") == 0, "cwd record %d '%s'",
          L.fds[0], L.fd_paths[0]);
}

static void ops_le64(T *t) { all_operations(t, 64, false); }
static void ops_le32(T *t) { all_operations(t, 32, false); }
static void ops_be32(T *t) { all_operations(t, 32, true); }
static void ops_be64(T *t) { all_operations(t, 64, true); }

/* A reply too short for the list header, a READ_FAIL and a missing task
 * each end the conversation with the decoder's message in the log. */
static void ops_hostile_replies(T *t)
{
    REQUIRE_API();
    REQUIRE_DECODERS();
    SETUP(64, true, 1);
    guest_set_osi(g, 3, 2, NULL, 0);
    guest_inject_answer(g, api.op("OSI_PROC_ALL"), PORTAL_RESP_READ_OK, 8, 1);
    run_listing(g, LIST_PROCESSES, "OSI_PROC_ALL", 0);
    CHECK(t_log_count(t, LOG_STEP_FAILED_LEVEL,
                      "OSI_PROC_ALL: malformed reply: the reply has 8 bytes, fewer than the 16 of the list header") == 1,
          "no log line for the short OSI_PROC_ALL page");
    guest_inject(g, api.op("OSI_MAPPINGS"), PORTAL_RESP_READ_FAIL, 1);
    run_listing(g, LIST_MAPPINGS, "OSI_MAPPINGS", 100);
    CHECK(t_log_count(t, LOG_STEP_FAILED_LEVEL, "OSI_MAPPINGS: the guest answered READ_FAIL, expected READ_OK") == 1,
          "no log line for the refused OSI_MAPPINGS");
    run_listing(g, ONE_PROCESS, "OSI_PROC", 4242);
    CHECK(t_log_count(t, LOG_STEP_FAILED_LEVEL, "OSI_PROC: the guest answered READ_FAIL, expected READ_OK") == 1,
          "no log line for OSI_PROC of a missing task");
    /* The conversation after each failure runs normally. */
    CHECK_EQ(run_listing(g, LIST_PROCESSES, "OSI_PROC_ALL", 0), 3);
}

/* A whole-file read from C: VFS_OPEN, VFS_READ until end of file, VFS_CLOSE. */
typedef struct file_read {
    const char *path;
    uint8_t bytes[8192];
    uint32_t length;
    int32_t open_error, read_error;
    int reads;
} file_read;

typedef struct file_state {
    int phase;          /* 0 open, 1 reading, 2 closing */
    uint32_t handle;
} file_state;

static file_read F;

static portal_step file_step(void *userdata, portal_conversation *conv,
                             const portal_response *response, portal_command *command,
                             uint64_t *result)
{
    file_read *f = userdata;
    file_state *st = conv->state;
    uint32_t wanted = conv->region_size - 16;
    if (response != NULL && st->phase == 0) {
        portal_vfs_open opened;
        if (api.decode_vfs_open(conv, response, &opened) < 0)
            return PORTAL_STEP_FAIL;
        f->open_error = opened.error;
        if (opened.error != 0) {
            *result = 0;
            return PORTAL_STEP_FINISH;
        }
        st->handle = opened.handle;
        st->phase = 1;
    } else if (response != NULL && st->phase == 1) {
        portal_vfs_chunk chunk;
        if (api.decode_vfs_read(conv, response, wanted, &chunk) < 0)
            return PORTAL_STEP_FAIL;
        f->reads++;
        f->read_error = chunk.error;
        if (chunk.error == 0 && f->length + chunk.length <= sizeof f->bytes) {
            memcpy(f->bytes + f->length, chunk.bytes, chunk.length);
            f->length += chunk.length;
        }
        if (chunk.error != 0 || chunk.end_of_file || chunk.length == 0)
            st->phase = 2;
    } else if (response != NULL) {
        *result = f->length;
        return PORTAL_STEP_FINISH;
    }
    if (st->phase == 0) {
        command->op = api.op("VFS_OPEN");
        command->data = f->path;
        command->data_length = strlen(f->path) + 1;
    } else {
        command->op = api.op(st->phase == 1 ? "VFS_READ" : "VFS_CLOSE");
        command->addr = st->handle;
        command->size = st->phase == 1 ? wanted : 0;
    }
    return PORTAL_STEP_COMMAND;
}

static portal_step heap_step(void *userdata, portal_conversation *conv,
                             const portal_response *response, portal_command *command,
                             uint64_t *result)
{
    uint64_t *bounds = userdata;
    if (response == NULL) {
        command->op = api.op("OSI_PROC_MEM");
        command->pid = 101;
        return PORTAL_STEP_COMMAND;
    }
    if (api.decode_heap(conv, response, &bounds[0], &bounds[1]) < 0)
        return PORTAL_STEP_FAIL;
    *result = bounds[1] - bounds[0];
    return PORTAL_STEP_FINISH;
}

static void file_operations(T *t, unsigned bits, bool big_endian)
{
    REQUIRE_API();
    REQUIRE_DECODERS();
    SETUP(bits, big_endian, 1);
    guest_set_osi(g, 3, 0, NULL, 0);
    uint64_t id;

    memset(&F, 0, sizeof F);
    F.path = GUEST_VFS_FILE;
    api.attach(HC_SYSCALL_ENTER, file_step, &F);
    CHECK_EQ(converse(g, 0, HC_SYSCALL_ENTER, 0, 0, &id), GUEST_VFS_FILE_SIZE);
    CHECK_EQ(F.reads, 2);   /* 4056 + 944 bytes, end of file on the second */
    for (uint32_t i = 0; i < GUEST_VFS_FILE_SIZE; i++)
        CHECK(F.bytes[i] == (uint8_t)(i * 7), "byte %u of the file is %#x", i, F.bytes[i]);

    memset(&F, 0, sizeof F);
    F.path = "/etc/missing";
    CHECK_EQ(converse(g, 0, HC_SYSCALL_ENTER, 0, 0, &id), 0);
    CHECK_EQ(F.open_error, 2);   /* ENOENT: missing, not empty */

    memset(&F, 0, sizeof F);
    F.path = GUEST_VFS_EINVAL;
    CHECK_EQ(converse(g, 0, HC_SYSCALL_ENTER, 0, 0, &id), 0);
    CHECK(F.open_error == 0 && F.read_error == 22 && F.reads == 1,
          "the EINVAL file: open %d, read %d after %d reads", F.open_error, F.read_error, F.reads);

    uint64_t bounds[2] = {0, 0};
    api.attach(HC_SYSCALL_ENTER, heap_step, bounds);
    CHECK_EQ(converse(g, 0, HC_SYSCALL_ENTER, 0, 0, &id), 0x21000);
    CHECK(bounds[0] == 0x600065 && bounds[1] == 0x621065, "heap %#llx-%#llx",
          (unsigned long long)bounds[0], (unsigned long long)bounds[1]);
}

static void ops_files_le64(T *t) { file_operations(t, 64, false); }
static void ops_files_le32(T *t) { file_operations(t, 32, false); }
static void ops_files_be32(T *t) { file_operations(t, 32, true); }
static void ops_files_be64(T *t) { file_operations(t, 64, true); }

/* A kernel buffer of more than one region, the way operations.h tells a C
 * user: COPY_BUF_GUEST with the total length (PORTAL_COMMAND_TOTAL_SIZE)
 * and the first region of bytes, then WRITEs of the rest at the answered
 * address plus the offset. Finishes with the buffer's address. */
typedef struct copy_job {
    const uint8_t *bytes;
    uint64_t total;
    uint32_t flags;           /* portal_command.flags of the COPY_BUF_GUEST */
} copy_job;

typedef struct copy_state {
    uint64_t buffer;          /* 0 until COPY_BUF_GUEST answered */
    uint64_t done;            /* bytes in the buffer once the last command succeeded */
    uint64_t sent;            /* bytes the last command carried */
} copy_state;

static portal_step copy_step(void *userdata, portal_conversation *conv,
                             const portal_response *response, portal_command *command,
                             uint64_t *result)
{
    const copy_job *job = userdata;
    copy_state *st = conv->state;
    uint64_t region = conv->region_size;
    if (response == NULL) {
        st->sent = job->total < region ? job->total : region;
        command->op = api.op("COPY_BUF_GUEST");
        command->size = (int64_t)job->total;
        command->flags = job->flags;
        command->data = job->bytes;
        command->data_length = (size_t)st->sent;
        return PORTAL_STEP_COMMAND;
    }
    if (st->buffer == 0) {
        if (response->code != PORTAL_RESP_READ_NUM || response->size == 0) {
            conv->error = "copy_step: COPY_BUF_GUEST allocated no buffer";
            return PORTAL_STEP_FAIL;
        }
        st->buffer = response->size;
    } else if (response->code != PORTAL_RESP_WRITE_OK) {
        conv->error = "copy_step: a WRITE of the rest failed";
        return PORTAL_STEP_FAIL;
    }
    st->done += st->sent;
    if (st->done == job->total) {
        *result = st->buffer;
        return PORTAL_STEP_FINISH;
    }
    st->sent = job->total - st->done < region ? job->total - st->done : region;
    command->op = api.op("WRITE");
    command->addr = st->buffer + st->done;
    command->size = (int64_t)st->sent;
    command->data = job->bytes + st->done;
    command->data_length = (size_t)st->sent;
    return PORTAL_STEP_COMMAND;
}

static uint8_t copy_bytes[10000];
static uint8_t copy_back[10000];

static void copy_into_kernel(T *t, unsigned bits, bool big_endian)
{
    REQUIRE_API();
    SETUP(bits, big_endian, 1);
    for (uint32_t i = 0; i < sizeof copy_bytes; i++)
        copy_bytes[i] = (uint8_t)(i * 13 + (i >> 8));
    uint64_t first_buffer = guest_get_config(g)->pool_base + GUEST_COPY_BUF_OFFSET;
    uint32_t copy = api.op("COPY_BUF_GUEST");
    uint64_t id;
    size_t n;

    /* 10,000 bytes: the header's size is the total, the payload the first
     * 4072 bytes; WRITEs of 4072 and 1856 at the buffer plus the offset. */
    copy_job job = {copy_bytes, sizeof copy_bytes, PORTAL_COMMAND_TOTAL_SIZE};
    api.attach(HC_SYSCALL_ENTER, copy_step, &job);
    CHECK_EQ(converse(g, 0, HC_SYSCALL_ENTER, 0, 0, &id), first_buffer);
    trap_record *tr = t_traps_of_conv(t, id, &n);
    CHECK_EQ(n, 4);
    CHECK_HEADER(&tr[0], copy, PORTAL_CURRENT_PID, 0, 10000);
    CHECK_BYTES(tr[0].payload, copy_bytes, TRAP_PAYLOAD_KEEP);
    CHECK_HEADER(&tr[1], OP_WRITE, PORTAL_CURRENT_PID, first_buffer + 4072, 4072);
    CHECK_BYTES(tr[1].payload, copy_bytes + 4072, TRAP_PAYLOAD_KEEP);
    CHECK_HEADER(&tr[2], OP_WRITE, PORTAL_CURRENT_PID, first_buffer + 8144, 1856);
    CHECK_BYTES(tr[2].payload, copy_bytes + 8144, TRAP_PAYLOAD_KEEP);
    memset(copy_back, 0, sizeof copy_back);
    CHECK_EQ(guest_peek(g, first_buffer, copy_back, sizeof copy_back), sizeof copy_back);
    CHECK_BYTES(copy_back, copy_bytes, sizeof copy_bytes);

    /* Without the flag the size is clamped to the region, so the guest
     * allocates one page and the first WRITE of the rest runs off it. */
    job.flags = 0;
    uint64_t second_buffer = first_buffer + 4 * GUEST_PAGE_SIZE;
    converse(g, 0, HC_SYSCALL_ENTER, 0, 0, &id);
    tr = t_traps_of_conv(t, id, &n);
    CHECK_EQ(n, 3);
    CHECK_HEADER(&tr[0], copy, PORTAL_CURRENT_PID, 0, 4072);
    CHECK_HEADER(&tr[1], OP_WRITE, PORTAL_CURRENT_PID, second_buffer + 4072, 4072);
    CHECK(t_log_count(t, LOG_STEP_FAILED_LEVEL, "copy_step: a WRITE of the rest failed") == 1,
          "no log line for the WRITE past the clamped buffer");

    /* A flag the library does not know fails the conversation before
     * anything is sent. */
    job.flags = 0x2;
    converse(g, 0, HC_SYSCALL_ENTER, 0, 0, &id);
    tr = t_traps_of_conv(t, id, &n);
    CHECK_EQ(n, 1);
    CHECK(t_log_count(t, LOG_STEP_FAILED_LEVEL,
                      "the step function set portal_command flags 0x2; only PORTAL_COMMAND_TOTAL_SIZE (0x1) exists") == 1,
          "no log line for the unknown flag");
}

static void ops_copy_le64(T *t) { copy_into_kernel(t, 64, false); }
static void ops_copy_le32(T *t) { copy_into_kernel(t, 32, false); }
static void ops_copy_be32(T *t) { copy_into_kernel(t, 32, true); }
static void ops_copy_be64(T *t) { copy_into_kernel(t, 64, true); }

const scenario scenarios_operations[] = {
    {"ops_le64", ops_le64, false},
    {"ops_le32", ops_le32, false},
    {"ops_be32", ops_be32, false},
    {"ops_be64", ops_be64, false},
    {"ops_hostile_replies", ops_hostile_replies, false},
    {"ops_files_le64", ops_files_le64, false},
    {"ops_files_le32", ops_files_le32, false},
    {"ops_files_be32", ops_files_be32, false},
    {"ops_files_be64", ops_files_be64, false},
    {"ops_copy_le64", ops_copy_le64, false},
    {"ops_copy_le32", ops_copy_le32, false},
    {"ops_copy_be32", ops_copy_be32, false},
    {"ops_copy_be64", ops_copy_be64, false},
    {NULL, NULL, false},
};
