// SPDX-License-Identifier: GPL-2.0
/*
 * portal.c - the guest side of the portal, as a Linux kernel module.
 *
 * Written for this project from the protocol description
 * (../shared/reference/PROTOCOL.md): it speaks the portal byte for byte as
 * the igloo guest module does, so that a host (libportal.so) can be tested
 * against a real kernel with real processes, page tables and faults.
 *
 * Conversation: igloo-style. Each conversation gets a fresh page whose
 * 24-byte header {u32 op; u32 pid; u64 addr; u64 size} is zeroed (the payload
 * keeps stale bytes), then the module traps with
 * hypercall(number, arg1, arg2, region, previous answer) until the host
 * leaves op = NONE. Commands run in the context of the task that made the
 * hypercall.
 *
 * When the module looks at the interrupt flag:
 *   - before each conversation of its own (not an interrupt one),
 *   - on every syscall entry and return (the sys_enter / sys_exit
 *     tracepoints): the probe runs with preemption disabled, so it only
 *     queues task work, and the PORTAL_INTERRUPT conversation runs when that
 *     user task returns to user mode, in its context;
 *   - from a kernel thread every PORTAL_POLL_MS, which takes the work when
 *     the flag has stayed set for a whole poll period (an idle guest, or a
 *     task that blocked before returning to user mode).
 *
 * Events raised: the syscall-enter event 0x1338 for execve, openat and
 * sethostname (struct syscall_event, PROTOCOL.md section 6; the host may
 * rewrite the arguments, or set skip and retval), and the process-exit event
 * 0x133c (48 bytes). They are ftrace hooks that send the call through a
 * wrapper here, so the conversation runs in the syscall's own (sleepable)
 * context before the real function.
 *
 * The hypercall: on x86_64 `outl %eax, $0x88` with the number in rax,
 * arg1..arg4 in rdi, rsi, rdx, r10 and the result in rax; on arm64
 * `msr S0_0_c5_c0_0, xzr` with the number in x8, arg1..arg4 in x0..x3 and
 * the result in x0 (UNDEFINED on a CPU without the plugin).
 */
#include <linux/cred.h>
#include <linux/io.h>
#include <linux/fdtable.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/fs_struct.h>
#include <linux/ftrace.h>
#include <linux/kprobes.h>
#include <linux/kthread.h>
#include <linux/mm.h>
#include <linux/mmap_lock.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/sched/task.h>
#include <linux/slab.h>
#include <linux/task_work.h>
#include <linux/timekeeping.h>
#include <linux/tracepoint.h>
#include <linux/uaccess.h>
#include <linux/umh.h>
#include <linux/delay.h>

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("portal guest module for the portal project's Linux test guest");

/* Hypercall numbers (PROTOCOL.md section 2). */
#define HC_REGISTER_MEM_REGION     0xbebebebeUL
#define HC_ENABLE_PORTAL_INTERRUPT 0x7901UL
#define HC_PORTAL_INTERRUPT        0x7902UL
#define HC_SYSCALL_ENTER           0x1338UL
#define HC_PROC_EXIT               0x133cUL

/* Operations, in the newest module's order (MAX 56). */
enum portal_op {
	OP_NONE = 0, OP_READ = 1, OP_WRITE = 2, OP_READ_STR = 3, OP_READ_PTR_ARRAY = 4,
	OP_EXEC = 6, OP_OSI_PROC = 7, OP_OSI_PROC_ALL = 9, OP_OSI_MAPPINGS = 10,
	OP_OSI_PROC_MEM = 11, OP_OSI_PROC_EXE = 12, OP_READ_PROCARGS = 14,
	OP_READ_PROCENV = 15, OP_READ_FDS = 16, OP_READ_TIME = 17, OP_READ_FILE = 18,
	OP_WRITE_FILE = 19, OP_KALLSYMS_LOOKUP = 33, OP_COPY_BUF_GUEST = 40,
	OP_VFS_OPEN = 53, OP_VFS_READ = 54,
	OP_VFS_CLOSE = 55, OP_MAX = 56,
};

/* Responses. */
#define RESP_READ_OK      0xf0000001U
#define RESP_READ_FAIL    0xf0000002U
#define RESP_READ_PARTIAL 0xf0000003U
#define RESP_WRITE_OK     0xf0000004U
#define RESP_WRITE_FAIL   0xf0000005U
#define RESP_READ_NUM     0xf0000006U

#define CURRENT_PID_NUM 0xffffffffU

/* The page a conversation uses: header, then CHUNK payload bytes. */
struct portal_region {
	u32 op;
	u32 pid;
	u64 addr;
	u64 size;
	u8 payload[];
};

#define CHUNK (PAGE_SIZE - sizeof(struct portal_region))
#define PATH_LIMIT 256                 /* paths in payloads: at most 255 bytes and a NUL */
#define PTR_ARRAY_STRING_LIMIT 127     /* READ_PTR_ARRAY cuts each string here */
#define PROC_ALL_PER_PAGE 72
#define MAPPINGS_PER_PAGE 28
#define MAPPINGS_POOL 2032             /* string pool offset in the payload */
#define FDS_PER_PAGE 127
#define FDS_POOL 2048
#define FD_CWD (-100)
#define EXEC_MAX_STRINGS 15
#define VFS_SLOTS 16
#define COPY_BUF_LIMIT (16UL << 20)     /* COPY_BUF_GUEST allocates at most this */
#define PORTAL_POLL_MS 50

/* List replies start with {u64 result_count, u64 total_count}. */
struct list_header {
	u64 result_count;
	u64 total_count;
};

struct proc_all_record {
	u64 pid, ppid, create_time;
	u32 uid, gid, euid, egid;
	char comm[16];
};

struct mapping_record {
	u64 base, size, file_off, name_off, offset, vm_flags, pgoff, dev, inode;
};

struct fd_record {
	u64 fd, name_off;
};

/* struct syscall_event as the host sees it on 64-bit guests (160 bytes). */
struct syscall_event {
	u64 args[6];
	u64 pc;
	u64 hook;
	u64 task;
	u64 regs;
	s64 retval;
	u64 pid;
	u64 create_time;
	u32 argc;
	bool skip;
	char name[48];
} __aligned(8);

/* Process-exit event (48 bytes on every architecture). */
struct exit_event {
	u64 pid, tid, create_time;
	s64 status;
	char comm[16];
};

static_assert(sizeof(struct proc_all_record) == 56);
static_assert(sizeof(struct mapping_record) == 72);
static_assert(sizeof(struct syscall_event) == 160);
static_assert(offsetof(struct syscall_event, name) == 109);
static_assert(sizeof(struct exit_event) == 48);
static_assert(sizeof(struct list_header) + PROC_ALL_PER_PAGE * sizeof(struct proc_all_record) <= 4072);
static_assert(sizeof(struct list_header) + MAPPINGS_PER_PAGE * sizeof(struct mapping_record) == MAPPINGS_POOL);
static_assert(sizeof(struct list_header) + FDS_PER_PAGE * sizeof(struct fd_record) == FDS_POOL);

/* The interrupt flag the host sets (kmalloc'ed: in the direct map). */
static u64 *interrupt_flag;
/* jiffies when a task was last given the interrupt work, 0 if none is pending. */
static atomic_long_t interrupt_work_queued_at;

static unsigned long hypercall(unsigned long number, unsigned long arg1, unsigned long arg2,
			       unsigned long arg3, unsigned long arg4)
{
#if defined(CONFIG_X86_64)
	register unsigned long r10 asm("r10") = arg4;
	unsigned long result = number;

	asm volatile("outl %%eax, $0x88"
		     : "+a"(result)
		     : "D"(arg1), "S"(arg2), "d"(arg3), "r"(r10)
		     : "memory");
	return result;
#elif defined(CONFIG_ARM64)
	register unsigned long x8 asm("x8") = number;
	register unsigned long x0 asm("x0") = arg1;
	register unsigned long x1 asm("x1") = arg2;
	register unsigned long x2 asm("x2") = arg3;
	register unsigned long x3 asm("x3") = arg4;

	asm volatile("msr S0_0_c5_c0_0, xzr"
		     : "+r"(x0)
		     : "r"(x8), "r"(x1), "r"(x2), "r"(x3)
		     : "memory");
	return x0;
#else
#error "portal.c knows the hypercall of x86_64 and arm64 only"
#endif
}

static void serve(struct portal_region *region);
static void run_interrupt(unsigned long arg1);

/*
 * One conversation: traps until the host leaves op = NONE (or an op this
 * module cannot take), serving every command in between. Returns the result
 * register of the last trap.
 */
static unsigned long portal_call(unsigned long number, unsigned long arg1, unsigned long arg2)
{
	struct portal_region *region;
	unsigned long result;
	u32 answer = 0;

	if (number != HC_PORTAL_INTERRUPT && READ_ONCE(*interrupt_flag))
		run_interrupt((unsigned long)interrupt_flag);

	region = (struct portal_region *)__get_free_page(GFP_KERNEL);
	if (!region)
		return 0;
	region->op = 0;
	region->pid = 0;
	region->addr = 0;
	region->size = 0;
	for (;;) {
		s32 op;

		result = hypercall(number, arg1, arg2, (unsigned long)region, answer);
		op = (s32)READ_ONCE(region->op);
		if (op == OP_NONE)
			break;
		if (op < 0 || op >= OP_MAX) {
			region->op = RESP_WRITE_FAIL;
			break;
		}
		serve(region);
		answer = region->op;
	}
	free_page((unsigned long)region);
	return result;
}

static void run_interrupt(unsigned long arg1)
{
	portal_call(HC_PORTAL_INTERRUPT, arg1, 0);
}

/* ---- kallsyms_lookup_name, found with a kprobe (it is not exported) ---- */

typedef unsigned long (*lookup_name_fn)(const char *name);
static lookup_name_fn lookup_name;
/* copy_to_kernel_nofault, which is not exported either. */
typedef long (*write_kernel_fn)(void *destination, const void *source, size_t size);
static write_kernel_fn write_kernel;

static int find_lookup_name(void)
{
	struct kprobe probe = { .symbol_name = "kallsyms_lookup_name" };
	int error = register_kprobe(&probe);

	if (error < 0)
		return error;
	lookup_name = (lookup_name_fn)probe.addr;
	unregister_kprobe(&probe);
	if (!lookup_name)
		return -ENOENT;
	write_kernel = (write_kernel_fn)lookup_name("copy_to_kernel_nofault");
	return 0;
}

/* ---- helpers ---- */

static bool is_kernel_address(u64 address)
{
	return address >= PAGE_OFFSET;
}

/* The task P names, with a reference; NULL if there is none. */
static struct task_struct *task_for(u32 pid)
{
	struct task_struct *task;

	if (pid == CURRENT_PID_NUM) {
		get_task_struct(current);
		return current;
	}
	rcu_read_lock();
	task = pid_task(find_vpid(pid), PIDTYPE_PID);
	if (task)
		get_task_struct(task);
	rcu_read_unlock();
	return task;
}

/* Copies a NUL-terminated string of at most limit - 1 bytes out of the payload. */
static void payload_string(const struct portal_region *region, char *out, size_t limit)
{
	size_t length = strnlen((const char *)region->payload, min_t(size_t, limit - 1, CHUNK));

	memcpy(out, region->payload, length);
	out[length] = '\0';
}

static void answer_number(struct portal_region *region, u64 value)
{
	region->size = value;
	region->op = RESP_READ_NUM;
}

static void answer_fail_text(struct portal_region *region, const char *text)
{
	strscpy((char *)region->payload, text, CHUNK);
	region->size = 0;
	region->op = RESP_READ_FAIL;
}

/* d_path into buffer (PATH_LIMIT bytes); returns the length, or -1. */
static int path_of(const struct path *path, char *buffer)
{
	char *scratch = kmalloc(PATH_MAX, GFP_KERNEL);
	char *name;
	int length = -1;

	if (!scratch)
		return -1;
	name = d_path(path, scratch, PATH_MAX);
	if (!IS_ERR(name)) {
		length = min_t(int, strlen(name), PATH_LIMIT - 1);
		memcpy(buffer, name, length);
		buffer[length] = '\0';
	}
	kfree(scratch);
	return length;
}

/* ---- memory ---- */

/*
 * Kernel addresses: S clamped to CHUNK, all or nothing. User addresses: a
 * short copy answers READ_PARTIAL with the bytes copied (0 for an unmapped
 * page). The real module does not clamp S for user addresses (the host must
 * keep it <= CHUNK); this one clamps too rather than run past its page.
 */
static void op_read(struct portal_region *region)
{
	u64 size = min_t(u64, region->size, CHUNK);

	if (is_kernel_address(region->addr)) {
		if (copy_from_kernel_nofault(region->payload, (const void *)region->addr, size)) {
			region->op = RESP_READ_FAIL;
			return;
		}
		region->size = size;
		region->op = RESP_READ_OK;
		return;
	}
	size -= copy_from_user(region->payload, (const void __user *)region->addr, size);
	region->op = size == min_t(u64, region->size, CHUNK) ? RESP_READ_OK : RESP_READ_PARTIAL;
	region->size = size;
}

static void op_write(struct portal_region *region)
{
	u64 size = min_t(u64, region->size, CHUNK);
	bool failed;

	if (is_kernel_address(region->addr))
		failed = !write_kernel || write_kernel((void *)region->addr, region->payload, size) != 0;
	else
		failed = copy_to_user((void __user *)region->addr, region->payload, size) != 0;
	region->op = failed ? RESP_WRITE_FAIL : RESP_WRITE_OK;
}

/*
 * A kernel string of at most max bytes into out (max + 1 bytes), copied in
 * pieces that stay within a page (strncpy_from_kernel_nofault is not
 * exported); its length, or -1 on a fault.
 */
static long read_kernel_string(u64 address, char *out, long max)
{
	long length = 0;

	while (length < max) {
		long piece = min_t(long, max - length, PAGE_SIZE - ((address + length) & ~PAGE_MASK));
		char *nul;

		if (copy_from_kernel_nofault(out + length, (const void *)(address + length), piece))
			return -1;
		nul = memchr(out + length, '\0', piece);
		if (nul)
			return nul - out;
		length += piece;
	}
	out[length] = '\0';
	return length;
}

/* Reads a string of at most max bytes at address into out (max + 1 bytes); length or -1. */
static long read_string(u64 address, char *out, long max)
{
	long length;

	if (is_kernel_address(address)) {
		/* Only the linear map, as the real module: vmalloc and module strings fail. */
		if (!virt_addr_valid((void *)address))
			return -1;
		return read_kernel_string(address, out, max);
	}
	length = strncpy_from_user(out, (const char __user *)address, max);
	if (length < 0)
		return -1;
	out[length] = '\0';
	return length;
}

static void op_read_str(struct portal_region *region)
{
	long max = region->size;
	long length;

	if (region->size == 0 || region->size > CHUNK - 1)
		max = CHUNK - 1;
	length = read_string(region->addr, (char *)region->payload, max);
	if (length < 0) {
		region->size = 0;
		region->op = RESP_READ_FAIL;
		return;
	}
	region->size = length;
	region->op = RESP_READ_OK;
}

static bool read_word(u64 address, u64 *value)
{
	if (is_kernel_address(address))
		return copy_from_kernel_nofault(value, (const void *)address, sizeof(*value)) == 0;
	return copy_from_user(value, (const void __user *)address, sizeof(*value)) == 0;
}

static void op_read_ptr_array(struct portal_region *region)
{
	char string[PTR_ARRAY_STRING_LIMIT + 1];
	u64 used = 0, index, pointer;
	long length;

	for (index = 0; read_word(region->addr + index * 8, &pointer) && pointer; index++) {
		length = read_string(pointer, string, PTR_ARRAY_STRING_LIMIT);
		if (length < 0)
			length = 0;
		string[length] = '\0';
		if (used + length + 1 > CHUNK)
			break;
		memcpy(region->payload + used, string, length + 1);
		used += length + 1;
	}
	region->size = used;
	region->op = RESP_READ_OK;
}

/* ---- processes ---- */

struct proc_fields {
	u64 taskd, pgd, pid, ppid, name_offset, create_time, map_count, start_brk, brk,
	    start_stack, start_code, end_code, start_data, end_data, arg_start, arg_end,
	    env_start, env_end, saved_auxv, mmap_base, task_size, uid, gid, euid, egid,
	    start_time;
};
static_assert(sizeof(struct proc_fields) == 208);

static u64 parent_of(struct task_struct *task)
{
	u64 ppid;

	rcu_read_lock();
	ppid = task_tgid_nr(rcu_dereference(task->real_parent));
	rcu_read_unlock();
	return ppid;
}

static void op_osi_proc(struct portal_region *region)
{
	struct task_struct *task = task_for(region->pid);
	struct proc_fields *fields = (struct proc_fields *)region->payload;
	const struct cred *cred;
	struct mm_struct *mm;
	char comm[TASK_COMM_LEN];

	if (!task) {
		region->op = RESP_READ_FAIL;
		return;
	}
	memset(fields, 0, sizeof(*fields));
	fields->taskd = (u64)task;
	fields->pid = task_tgid_nr(task);
	fields->ppid = parent_of(task);
	fields->name_offset = sizeof(*fields);
	fields->create_time = task->start_time;
	fields->start_time = task->start_boottime;
	rcu_read_lock();
	cred = __task_cred(task);
	fields->uid = from_kuid(&init_user_ns, cred->uid);
	fields->gid = from_kgid(&init_user_ns, cred->gid);
	fields->euid = from_kuid(&init_user_ns, cred->euid);
	fields->egid = from_kgid(&init_user_ns, cred->egid);
	rcu_read_unlock();
	mm = get_task_mm(task);
	if (mm) {
		fields->pgd = virt_to_phys(mm->pgd);
		fields->map_count = mm->map_count;
		fields->start_brk = mm->start_brk;
		fields->brk = mm->brk;
		fields->start_stack = mm->start_stack;
		fields->start_code = mm->start_code;
		fields->end_code = mm->end_code;
		fields->start_data = mm->start_data;
		fields->end_data = mm->end_data;
		fields->arg_start = mm->arg_start;
		fields->arg_end = mm->arg_end;
		fields->env_start = mm->env_start;
		fields->env_end = mm->env_end;
		fields->mmap_base = mm->mmap_base;
		fields->task_size = mm->task_size;
		mmput(mm);
	}
	get_task_comm(comm, task);
	put_task_struct(task);
	strscpy((char *)region->payload + sizeof(*fields), comm, TASK_COMM_LEN);
	region->size = sizeof(*fields) + strlen(comm);
	region->op = RESP_READ_OK;
}

static void op_osi_proc_all(struct portal_region *region)
{
	struct list_header *header = (struct list_header *)region->payload;
	struct proc_all_record *records = (struct proc_all_record *)(header + 1);
	struct task_struct *task;
	u64 skip = region->addr, seen = 0, count = 0;

	rcu_read_lock();
	for_each_process(task) {
		struct proc_all_record *record;
		const struct cred *cred;

		if (task->flags & PF_KTHREAD)
			continue;
		if (seen++ < skip || count >= PROC_ALL_PER_PAGE)
			continue;
		record = &records[count++];
		memset(record, 0, sizeof(*record));
		record->pid = task_tgid_nr(task);
		record->ppid = task_tgid_nr(rcu_dereference(task->real_parent));
		record->create_time = task->start_time;
		cred = __task_cred(task);
		record->uid = from_kuid(&init_user_ns, cred->uid);
		record->gid = from_kgid(&init_user_ns, cred->gid);
		record->euid = from_kuid(&init_user_ns, cred->euid);
		record->egid = from_kgid(&init_user_ns, cred->egid);
		strncpy(record->comm, task->comm, sizeof(record->comm) - 1);
	}
	rcu_read_unlock();
	header->result_count = count;
	header->total_count = seen;
	region->size = sizeof(*header) + count * sizeof(*records);
	region->op = RESP_READ_OK;
}

/* The name of a mapping as /proc/PID/maps gives it; "" for anonymous memory. */
static void mapping_name(struct vm_area_struct *vma, char *buffer)
{
	buffer[0] = '\0';
	if (vma->vm_file) {
		if (path_of(&vma->vm_file->f_path, buffer) < 0)
			buffer[0] = '\0';
		return;
	}
	if (vma->vm_ops && vma->vm_ops->name) {
		strscpy(buffer, vma->vm_ops->name(vma), PATH_LIMIT);
		return;
	}
	if (vma->vm_start <= vma->vm_mm->brk && vma->vm_end >= vma->vm_mm->start_brk) {
		strscpy(buffer, "[heap]", PATH_LIMIT);
		return;
	}
	if (vma->vm_start <= vma->vm_mm->start_stack && vma->vm_end >= vma->vm_mm->start_stack) {
		strscpy(buffer, "[stack]", PATH_LIMIT);
		return;
	}
	if (vma->vm_mm->context.vdso == (void __user *)vma->vm_start) {
		strscpy(buffer, "[vdso]", PATH_LIMIT);
		return;
	}
	if (vma->anon_name)
		snprintf(buffer, PATH_LIMIT, "[anon:%s]", vma->anon_name->name);
}

static void op_osi_mappings(struct portal_region *region)
{
	struct list_header *header = (struct list_header *)region->payload;
	struct mapping_record *records = (struct mapping_record *)(header + 1);
	struct task_struct *task = task_for(region->pid);
	struct vm_area_struct *vma;
	struct mm_struct *mm;
	u64 skip = region->addr, seen = 0, count = 0, pool = MAPPINGS_POOL;
	char *name;

	if (!task) {
		region->op = RESP_READ_FAIL;
		return;
	}
	mm = get_task_mm(task);
	put_task_struct(task);
	name = kmalloc(PATH_LIMIT, GFP_KERNEL);
	if (!mm || !name) {
		if (mm)
			mmput(mm);
		kfree(name);
		region->op = RESP_READ_FAIL;
		return;
	}
	mmap_read_lock(mm);
	{
		VMA_ITERATOR(iterator, mm, 0);

		for_each_vma(iterator, vma) {
			struct mapping_record *record;
			size_t length;

			if (seen++ < skip)
				continue;
			if (count >= MAPPINGS_PER_PAGE)
				break;
			mapping_name(vma, name);
			length = strlen(name);
			if (pool + length + 1 > CHUNK)
				break;
			record = &records[count++];
			record->base = vma->vm_start;
			record->size = vma->vm_end - vma->vm_start;
			record->file_off = (u64)vma->vm_pgoff << PAGE_SHIFT;
			record->name_off = pool;
			record->offset = (u64)vma->vm_pgoff << PAGE_SHIFT;
			record->vm_flags = vma->vm_flags & (VM_READ | VM_WRITE | VM_EXEC | VM_SHARED | VM_MAYSHARE);
			record->pgoff = vma->vm_pgoff;
			record->dev = 0;
			record->inode = 0;
			if (vma->vm_file) {
				struct inode *inode = file_inode(vma->vm_file);

				record->dev = (u64)MAJOR(inode->i_sb->s_dev) << 20 | MINOR(inode->i_sb->s_dev);
				record->inode = inode->i_ino;
			}
			memcpy(region->payload + pool, name, length + 1);
			pool += length + 1;
		}
	}
	header->result_count = count;
	header->total_count = mm->map_count;
	mmap_read_unlock(mm);
	mmput(mm);
	kfree(name);
	region->size = pool;
	region->op = RESP_READ_OK;
}

static void op_osi_proc_mem(struct portal_region *region)
{
	struct task_struct *task = task_for(region->pid);
	struct mm_struct *mm = NULL;
	u64 *words = (u64 *)region->payload;

	if (task) {
		mm = get_task_mm(task);
		put_task_struct(task);
	}
	if (!mm) {
		region->op = RESP_READ_FAIL;
		return;
	}
	words[0] = mm->start_brk;
	words[1] = mm->brk;
	mmput(mm);
	region->size = 16;
	region->op = RESP_READ_OK;
}

static void op_osi_proc_exe(struct portal_region *region)
{
	struct task_struct *task = task_for(region->pid);
	struct mm_struct *mm = NULL;
	struct file *exe = NULL;
	int length = -1;

	if (task) {
		mm = get_task_mm(task);
		put_task_struct(task);
	}
	if (mm) {
		mmap_read_lock(mm);
		exe = mm->exe_file;
		if (exe)
			get_file(exe);
		mmap_read_unlock(mm);
		mmput(mm);
	}
	if (exe) {
		length = path_of(&exe->f_path, (char *)region->payload);
		fput(exe);
	}
	if (length < 0) {
		region->op = RESP_READ_FAIL;
		return;
	}
	region->size = length;
	region->op = RESP_READ_OK;
}

/* Copies [start, end) of the task's memory (at most CHUNK - 1 bytes); -1 on failure. */
static long copy_task_area(u32 pid, bool arguments, u8 *out)
{
	struct task_struct *task = task_for(pid);
	struct mm_struct *mm;
	unsigned long start, end;
	long copied;

	if (!task)
		return -1;
	mm = get_task_mm(task);
	if (!mm) {
		put_task_struct(task);
		return -1;
	}
	spin_lock(&mm->arg_lock);
	start = arguments ? mm->arg_start : mm->env_start;
	end = arguments ? mm->arg_end : mm->env_end;
	spin_unlock(&mm->arg_lock);
	mmput(mm);
	if (end <= start) {
		put_task_struct(task);
		return -1;
	}
	copied = access_process_vm(task, start, out, min_t(unsigned long, end - start, CHUNK - 1), FOLL_FORCE);
	put_task_struct(task);
	return copied > 0 ? copied : -1;
}

static void op_read_procargs(struct portal_region *region)
{
	long length = copy_task_area(region->pid, true, region->payload), i;

	if (length < 0) {
		answer_fail_text(region, "UNKNOWN_PROCARGS");
		return;
	}
	/* NULs between arguments become spaces; the last one stays. */
	for (i = 0; i + 1 < length; i++)
		if (region->payload[i] == '\0')
			region->payload[i] = ' ';
	region->payload[length - 1] = '\0';
	region->size = length;
	region->op = RESP_READ_OK;
}

static void op_read_procenv(struct portal_region *region)
{
	long length = copy_task_area(region->pid, false, region->payload);

	if (length < 0) {
		answer_fail_text(region, "UNKNOWN_PROCENV");
		return;
	}
	region->size = length;
	region->op = RESP_READ_OK;
}

static void op_read_fds(struct portal_region *region)
{
	struct list_header *header = (struct list_header *)region->payload;
	struct fd_record *records = (struct fd_record *)(header + 1);
	struct task_struct *task = task_for(region->pid);
	u64 pool = FDS_POOL, count = 0, resume = 0;
	int first = (int)(s64)region->addr;
	char *name;

	name = kmalloc(PATH_LIMIT, GFP_KERNEL);
	if (!task || !name) {
		if (task)
			put_task_struct(task);
		kfree(name);
		region->op = RESP_READ_FAIL;
		return;
	}
	if (first == FD_CWD) {
		struct path pwd;
		int length = -1;

		task_lock(task);
		if (task->fs) {
			get_fs_pwd(task->fs, &pwd);
			task_unlock(task);
			length = path_of(&pwd, name);
			path_put(&pwd);
		} else {
			task_unlock(task);
		}
		if (length >= 0) {
			records[0].fd = (u64)(s64)FD_CWD;
			records[0].name_off = pool;
			memcpy(region->payload + pool, name, length + 1);
			pool += length + 1;
			count = 1;
		}
	} else {
		unsigned int fd = first < 0 ? 0 : first;

		for (;;) {
			struct file *file;
			int length;

			rcu_read_lock();
			file = task_lookup_next_fd_rcu(task, &fd);
			if (file && !get_file_rcu(file))
				file = NULL;
			rcu_read_unlock();
			if (!file)
				break;
			if (count >= FDS_PER_PAGE) {
				fput(file);
				resume = fd;
				break;
			}
			length = path_of(&file->f_path, name);
			fput(file);
			if (length < 0) {
				length = 0;
				name[0] = '\0';
			}
			if (pool + length + 1 > CHUNK) {
				resume = fd;
				break;
			}
			records[count].fd = fd;
			records[count].name_off = pool;
			memcpy(region->payload + pool, name, length + 1);
			pool += length + 1;
			count++;
			fd++;
		}
	}
	put_task_struct(task);
	kfree(name);
	header->result_count = count;
	header->total_count = count;
	region->addr = resume;
	region->size = pool;
	region->op = RESP_READ_OK;
}

/* ---- numbers ---- */

static void op_kallsyms_lookup(struct portal_region *region)
{
	char name[KSYM_NAME_LEN];

	payload_string(region, name, sizeof(name));
	answer_number(region, lookup_name ? lookup_name(name) : 0);
}

/* ---- files and programs ---- */

/*
 * COPY_BUF_GUEST: S is the buffer's total length, not clamped to CHUNK; the
 * first min(S, CHUNK) bytes come in the payload and the host WRITEs the rest
 * to the buffer (op_write reaches it: it is a kernel address). READ_NUM with
 * the address. The buffer is never freed (PROTOCOL.md section 6), and
 * zeroed, so bytes the host never writes are not stale kernel memory. 0 or
 * more than COPY_BUF_LIMIT bytes, or a failed allocation: WRITE_FAIL.
 */
static void op_copy_buf_guest(struct portal_region *region)
{
	u64 total = region->size;
	u8 *buffer;

	if (total == 0 || total > COPY_BUF_LIMIT) {
		region->op = RESP_WRITE_FAIL;
		return;
	}
	buffer = kvzalloc(total, GFP_KERNEL);
	if (!buffer) {
		region->op = RESP_WRITE_FAIL;
		return;
	}
	memcpy(buffer, region->payload, min_t(u64, total, CHUNK));
	answer_number(region, (u64)(unsigned long)buffer);
}

static void op_read_file(struct portal_region *region)
{
	char path[PATH_LIMIT];
	u64 max = region->size;
	loff_t position = region->addr;
	struct file *file;
	ssize_t got;

	if (max == 0 || max > CHUNK - 1)
		max = CHUNK - 1;
	payload_string(region, path, sizeof(path));
	file = filp_open(path, O_RDONLY, 0);
	if (IS_ERR(file)) {
		answer_fail_text(region, "READ_FILE_FAIL");
		return;
	}
	got = kernel_read(file, region->payload, max, &position);
	filp_close(file, NULL);
	if (got <= 0) {
		answer_fail_text(region, "READ_FILE_FAIL");
		return;
	}
	region->size = got;
	region->op = RESP_READ_OK;
}

static void op_write_file(struct portal_region *region)
{
	char path[PATH_LIMIT];
	u64 count = region->size;
	loff_t position = region->addr;
	size_t data_offset;
	struct file *file;
	ssize_t written;

	payload_string(region, path, sizeof(path));
	data_offset = strlen(path) + 1;
	if (count == 0)
		count = CHUNK - 1;
	/* The real module reads past the page here; this one stops at its end. */
	count = min_t(u64, count, CHUNK - data_offset);
	file = filp_open(path, O_WRONLY | O_CREAT, 0644);
	if (IS_ERR(file)) {
		region->op = RESP_WRITE_FAIL;
		return;
	}
	written = kernel_write(file, region->payload + data_offset, count, &position);
	filp_close(file, NULL);
	if (written < 0) {
		region->op = RESP_WRITE_FAIL;
		return;
	}
	answer_number(region, written);
}

struct vfs_slot {
	struct file *file;
	u32 generation;
	u64 opened;          /* order of opening, to reclaim the oldest */
};
static struct vfs_slot vfs_slots[VFS_SLOTS];
static u64 vfs_opened;
static DEFINE_MUTEX(vfs_lock);

struct vfs_open_reply {
	s32 error;
	u32 handle;
	u64 fs_magic;
};

struct vfs_read_reply {
	s32 error;
	u32 nbytes;
	u8 eof;
	u8 pad[7];
};

static void op_vfs_open(struct portal_region *region)
{
	struct vfs_open_reply *reply = (struct vfs_open_reply *)region->payload;
	char path[PATH_LIMIT];
	struct file *file;
	int slot, chosen = 0;

	payload_string(region, path, sizeof(path));
	memset(reply, 0, sizeof(*reply));
	file = filp_open(path, O_RDONLY, 0);
	if (IS_ERR(file)) {
		reply->error = PTR_ERR(file);
	} else {
		mutex_lock(&vfs_lock);
		for (slot = 0; slot < VFS_SLOTS; slot++) {
			if (!vfs_slots[slot].file) {
				chosen = slot;
				break;
			}
			if (vfs_slots[slot].opened < vfs_slots[chosen].opened)
				chosen = slot;
		}
		if (vfs_slots[chosen].file)
			filp_close(vfs_slots[chosen].file, NULL);
		vfs_slots[chosen].file = file;
		vfs_slots[chosen].generation++;
		vfs_slots[chosen].opened = ++vfs_opened;
		reply->handle = (vfs_slots[chosen].generation << 8) | (chosen + 1);
		mutex_unlock(&vfs_lock);
		reply->fs_magic = file_inode(file)->i_sb->s_magic;
	}
	region->size = sizeof(*reply);
	region->op = RESP_READ_OK;
}

/* The slot a handle names, or -1; call with vfs_lock held. */
static int vfs_slot_of(u64 handle)
{
	int slot = (int)(handle & 0xff) - 1;

	if (slot < 0 || slot >= VFS_SLOTS || !vfs_slots[slot].file ||
	    (u32)(handle >> 8) != vfs_slots[slot].generation)
		return -1;
	return slot;
}

static void op_vfs_read(struct portal_region *region)
{
	struct vfs_read_reply *reply = (struct vfs_read_reply *)region->payload;
	u64 wanted = min_t(u64, region->size, CHUNK - sizeof(*reply));
	ssize_t got = 0;
	int slot;

	memset(reply, 0, sizeof(*reply));
	mutex_lock(&vfs_lock);
	slot = vfs_slot_of(region->addr);
	if (slot < 0) {
		reply->error = -EBADF;
	} else {
		struct file *file = vfs_slots[slot].file;

		got = kernel_read(file, region->payload + sizeof(*reply), wanted, &file->f_pos);
		if (got < 0) {
			reply->error = got;
			got = 0;
		} else {
			reply->nbytes = got;
			reply->eof = got == 0;
		}
	}
	mutex_unlock(&vfs_lock);
	region->size = sizeof(*reply) + got;
	region->op = RESP_READ_OK;
}

static void op_vfs_close(struct portal_region *region)
{
	s32 *reply = (s32 *)region->payload;
	int slot;

	reply[0] = 0;
	reply[1] = 0;
	mutex_lock(&vfs_lock);
	slot = vfs_slot_of(region->addr);
	if (slot < 0) {
		reply[0] = -EBADF;
	} else {
		filp_close(vfs_slots[slot].file, NULL);
		vfs_slots[slot].file = NULL;
	}
	mutex_unlock(&vfs_lock);
	region->size = 8;
	region->op = RESP_READ_OK;
}

/* Splits "s\0s\0...\0\0" at *cursor into up to EXEC_MAX_STRINGS pointers; false if malformed. */
static bool split_strings(char *payload, size_t *cursor, char **out)
{
	int count = 0;

	while (*cursor < CHUNK && payload[*cursor] != '\0') {
		size_t length = strnlen(payload + *cursor, CHUNK - *cursor);

		if (*cursor + length >= CHUNK || count == EXEC_MAX_STRINGS)
			return false;
		out[count++] = payload + *cursor;
		*cursor += length + 1;
	}
	if (*cursor >= CHUNK)
		return false;
	(*cursor)++;
	out[count] = NULL;
	return true;
}

static void op_exec(struct portal_region *region)
{
	char *argv[EXEC_MAX_STRINGS + 1], *envp[EXEC_MAX_STRINGS + 1];
	char *payload = (char *)region->payload, *path;
	size_t cursor, path_length;
	int result;

	path_length = strnlen(payload, PATH_LIMIT);
	if (path_length == 0 || path_length >= PATH_LIMIT) {
		answer_number(region, (u64)(s64)-EINVAL);
		return;
	}
	path = payload;
	cursor = path_length + 1;
	if (!split_strings(payload, &cursor, argv) || !split_strings(payload, &cursor, envp)) {
		answer_number(region, (u64)(s64)-EINVAL);
		return;
	}
	result = call_usermodehelper(path, argv, envp, region->addr ? UMH_WAIT_PROC : UMH_WAIT_EXEC);
	answer_number(region, (u64)(s64)result);
}

/* Runs the command in the region and leaves the answer there. */
static void serve(struct portal_region *region)
{
	switch (region->op) {
	case OP_READ: op_read(region); break;
	case OP_WRITE: op_write(region); break;
	case OP_READ_STR: op_read_str(region); break;
	case OP_READ_PTR_ARRAY: op_read_ptr_array(region); break;
	case OP_EXEC: op_exec(region); break;
	case OP_OSI_PROC: op_osi_proc(region); break;
	case OP_OSI_PROC_ALL: op_osi_proc_all(region); break;
	case OP_OSI_MAPPINGS: op_osi_mappings(region); break;
	case OP_OSI_PROC_MEM: op_osi_proc_mem(region); break;
	case OP_OSI_PROC_EXE: op_osi_proc_exe(region); break;
	case OP_READ_PROCARGS: op_read_procargs(region); break;
	case OP_READ_PROCENV: op_read_procenv(region); break;
	case OP_READ_FDS: op_read_fds(region); break;
	case OP_READ_TIME: answer_number(region, ktime_get_ns()); break;
	case OP_READ_FILE: op_read_file(region); break;
	case OP_WRITE_FILE: op_write_file(region); break;
	case OP_KALLSYMS_LOOKUP: op_kallsyms_lookup(region); break;
	case OP_COPY_BUF_GUEST: op_copy_buf_guest(region); break;
	case OP_VFS_OPEN: op_vfs_open(region); break;
	case OP_VFS_READ: op_vfs_read(region); break;
	case OP_VFS_CLOSE: op_vfs_close(region); break;
	default: region->op = RESP_WRITE_FAIL; break;
	}
}

/* ---- the interrupt flag: syscall entry and return, and a polling thread ---- */

static void interrupt_task_work(struct callback_head *work)
{
	kfree(work);
	atomic_long_set(&interrupt_work_queued_at, 0);
	if (READ_ONCE(*interrupt_flag))
		run_interrupt((unsigned long)interrupt_flag);
}

/*
 * Called with preemption disabled: queues the interrupt conversation to run
 * when this task returns to user mode. One task at a time holds the work,
 * unless it has held it for more than a poll period without running it
 * (blocked in the kernel).
 */
static void check_flag_from_syscall(void)
{
	struct callback_head *work;
	long queued_at, now = jiffies | 1;

	if (likely(!READ_ONCE(*interrupt_flag)))
		return;
	if (!current->mm || (current->flags & (PF_KTHREAD | PF_EXITING)))
		return;
	queued_at = atomic_long_read(&interrupt_work_queued_at);
	if (queued_at && time_before(jiffies, queued_at + msecs_to_jiffies(PORTAL_POLL_MS)))
		return;
	if (atomic_long_cmpxchg(&interrupt_work_queued_at, queued_at, now) != queued_at)
		return;
	work = kmalloc(sizeof(*work), GFP_ATOMIC | __GFP_NOWARN);
	if (!work) {
		atomic_long_set(&interrupt_work_queued_at, 0);
		return;
	}
	init_task_work(work, interrupt_task_work);
	if (task_work_add(current, work, TWA_RESUME)) {
		kfree(work);
		atomic_long_set(&interrupt_work_queued_at, 0);
	}
}

static void probe_sys_enter(void *data, struct pt_regs *regs, long id)
{
	check_flag_from_syscall();
}

static void probe_sys_exit(void *data, struct pt_regs *regs, long ret)
{
	check_flag_from_syscall();
}

static struct tracepoint *tracepoint_sys_enter, *tracepoint_sys_exit;

static void find_tracepoint(struct tracepoint *tracepoint, void *unused)
{
	if (!strcmp(tracepoint->name, "sys_enter"))
		tracepoint_sys_enter = tracepoint;
	else if (!strcmp(tracepoint->name, "sys_exit"))
		tracepoint_sys_exit = tracepoint;
}

/* Takes the interrupt work when the flag stayed set for a whole period. */
static int poll_flag(void *unused)
{
	bool seen_set = false;

	for (;;) {
		msleep_interruptible(PORTAL_POLL_MS);
		if (!READ_ONCE(*interrupt_flag)) {
			seen_set = false;
			continue;
		}
		if (seen_set) {
			run_interrupt((unsigned long)interrupt_flag);
			seen_set = false;
		} else {
			seen_set = true;
		}
	}
	return 0;
}

/* ---- events: ftrace hooks that send a function through a wrapper here ---- */

struct portal_hook {
	const char *symbol;
	const char *name;       /* syscall_event.name */
	u32 argc;
	void *wrapper;
	unsigned long address;  /* the real function */
	struct ftrace_ops ops;
	bool registered;
};

typedef long (*syscall_fn)(const struct pt_regs *regs);
typedef void (*exit_fn)(long code);

static long hooked_execve(const struct pt_regs *regs);
static long hooked_openat(const struct pt_regs *regs);
static long hooked_sethostname(const struct pt_regs *regs);
static void hooked_do_exit(long code);

enum { HOOK_EXECVE, HOOK_OPENAT, HOOK_SETHOSTNAME, HOOK_DO_EXIT, HOOK_COUNT };

#if defined(CONFIG_X86_64)
#define SYSCALL_SYMBOL(name) "__x64_sys_" name
#else
#define SYSCALL_SYMBOL(name) "__arm64_sys_" name
#endif

static struct portal_hook hooks[HOOK_COUNT] = {
	[HOOK_EXECVE] = { SYSCALL_SYMBOL("execve"), "execve", 3, hooked_execve },
	[HOOK_OPENAT] = { SYSCALL_SYMBOL("openat"), "openat", 4, hooked_openat },
	[HOOK_SETHOSTNAME] = { SYSCALL_SYMBOL("sethostname"), "sethostname", 2, hooked_sethostname },
	[HOOK_DO_EXIT] = { "do_exit", "exit", 1, hooked_do_exit },
};

static void notrace hook_thunk(unsigned long ip, unsigned long parent_ip,
			       struct ftrace_ops *ops, struct ftrace_regs *fregs)
{
	struct portal_hook *hook = container_of(ops, struct portal_hook, ops);

	struct pt_regs *regs = ftrace_get_regs(fregs);

	/* The wrapper's own call of the real function goes through. */
	if (regs && !within_module(parent_ip, THIS_MODULE))
		instruction_pointer_set(regs, (unsigned long)hook->wrapper);
}

/* Where syscall argument i (0..5) lives in the user registers the wrapper gets. */
static unsigned long *syscall_argument_slot(struct pt_regs *regs, int i)
{
#if defined(CONFIG_X86_64)
	unsigned long *slots[6] = { &regs->di, &regs->si, &regs->dx, &regs->r10, &regs->r8, &regs->r9 };

	return slots[i];
#else
	return (unsigned long *)&regs->regs[i];
#endif
}

static unsigned long syscall_argument(struct pt_regs *regs, int i)
{
	return *syscall_argument_slot(regs, i);
}

/* The syscall-enter event; the host may rewrite the arguments or skip the call. */
static long syscall_enter(int index, const struct pt_regs *const_regs)
{
	struct portal_hook *hook = &hooks[index];
	struct pt_regs *regs = (struct pt_regs *)const_regs;
	struct syscall_event *event;
	long result;
	int i;

	if (current->flags & PF_KTHREAD)
		return ((syscall_fn)hook->address)(regs);
	event = kzalloc(sizeof(*event), GFP_KERNEL);
	if (!event)
		return ((syscall_fn)hook->address)(regs);
	for (i = 0; i < 6; i++)
		event->args[i] = syscall_argument(regs, i);
	event->pc = instruction_pointer(regs);
	event->hook = index + 1;
	event->task = (u64)current;
	event->regs = (u64)regs;
	event->pid = task_tgid_nr(current);
	event->create_time = current->start_time;
	event->argc = hook->argc;
	strscpy(event->name, hook->name, sizeof(event->name));
	portal_call(HC_SYSCALL_ENTER, (unsigned long)event, 0);
	if (READ_ONCE(event->skip)) {
		result = event->retval;
	} else {
		for (i = 0; i < 6; i++)
			*syscall_argument_slot(regs, i) = event->args[i];
		result = ((syscall_fn)hook->address)(regs);
	}
	kfree(event);
	return result;
}

static long hooked_execve(const struct pt_regs *regs)
{
	return syscall_enter(HOOK_EXECVE, regs);
}

static long hooked_openat(const struct pt_regs *regs)
{
	return syscall_enter(HOOK_OPENAT, regs);
}

static long hooked_sethostname(const struct pt_regs *regs)
{
	return syscall_enter(HOOK_SETHOSTNAME, regs);
}

/* The process-exit event, for user processes (the thread group's leader). */
static void hooked_do_exit(long code)
{
	struct exit_event *event;

	if (current->mm && !(current->flags & PF_KTHREAD) && thread_group_leader(current)) {
		event = kzalloc(sizeof(*event), GFP_KERNEL);
		if (event) {
			event->pid = task_tgid_nr(current);
			event->tid = task_pid_nr(current);
			event->create_time = current->start_time;
			event->status = code;
			get_task_comm(event->comm, current);
			portal_call(HC_PROC_EXIT, (unsigned long)event, 0);
			kfree(event);
		}
	}
	((exit_fn)hooks[HOOK_DO_EXIT].address)(code);
}

static int install_hook(struct portal_hook *hook)
{
	int error;

	hook->address = lookup_name(hook->symbol);
	if (!hook->address) {
		pr_err("portal: %s not found\n", hook->symbol);
		return -ENOENT;
	}
	hook->ops.func = hook_thunk;
	hook->ops.flags = FTRACE_OPS_FL_SAVE_REGS | FTRACE_OPS_FL_RECURSION | FTRACE_OPS_FL_IPMODIFY;
	error = ftrace_set_filter_ip(&hook->ops, hook->address, 0, 0);
	if (error) {
		pr_err("portal: ftrace_set_filter_ip(%s) failed: %d\n", hook->symbol, error);
		return error;
	}
	error = register_ftrace_function(&hook->ops);
	if (error) {
		ftrace_set_filter_ip(&hook->ops, hook->address, 1, 0);
		pr_err("portal: register_ftrace_function(%s) failed: %d\n", hook->symbol, error);
		return error;
	}
	hook->registered = true;
	return 0;
}

static void remove_hooks(void)
{
	int i;

	for (i = 0; i < HOOK_COUNT; i++) {
		if (!hooks[i].registered)
			continue;
		unregister_ftrace_function(&hooks[i].ops);
		ftrace_set_filter_ip(&hooks[i].ops, hooks[i].address, 1, 0);
		hooks[i].registered = false;
	}
}

/* ---- load and unload ---- */

static void register_region_size(void *unused)
{
	hypercall(HC_REGISTER_MEM_REGION, CHUNK, 0, 0, 0);
}

static void remove_tracepoints(void)
{
	if (tracepoint_sys_enter)
		tracepoint_probe_unregister(tracepoint_sys_enter, probe_sys_enter, NULL);
	if (tracepoint_sys_exit)
		tracepoint_probe_unregister(tracepoint_sys_exit, probe_sys_exit, NULL);
	tracepoint_synchronize_unregister();
}

static int __init portal_init(void)
{
	struct task_struct *poller;
	int error, i;

	error = find_lookup_name();
	if (error) {
		pr_err("portal: kallsyms_lookup_name not found: %d\n", error);
		return error;
	}
	interrupt_flag = kzalloc(sizeof(*interrupt_flag), GFP_KERNEL);
	if (!interrupt_flag)
		return -ENOMEM;

	on_each_cpu(register_region_size, NULL, 1);
	hypercall(HC_ENABLE_PORTAL_INTERRUPT, (unsigned long)interrupt_flag, 0, 0, 0);
	/* Work queued before the module came up. */
	run_interrupt(1);

	for_each_kernel_tracepoint(find_tracepoint, NULL);
	if (!tracepoint_sys_enter || !tracepoint_sys_exit) {
		pr_err("portal: the sys_enter/sys_exit tracepoints were not found\n");
		error = -ENOENT;
		goto fail;
	}
	error = tracepoint_probe_register(tracepoint_sys_enter, probe_sys_enter, NULL);
	if (!error)
		error = tracepoint_probe_register(tracepoint_sys_exit, probe_sys_exit, NULL);
	if (error) {
		pr_err("portal: tracepoint_probe_register failed: %d\n", error);
		goto fail;
	}
	for (i = 0; i < HOOK_COUNT; i++) {
		error = install_hook(&hooks[i]);
		if (error)
			goto fail;
	}
	poller = kthread_run(poll_flag, NULL, "portal-poll");
	if (IS_ERR(poller)) {
		error = PTR_ERR(poller);
		goto fail;
	}
	pr_info("portal: loaded: region %lu bytes, flag at 0x%lx\n", CHUNK, (unsigned long)interrupt_flag);
	return 0;

fail:
	remove_hooks();
	remove_tracepoints();
	/* interrupt_flag stays allocated: the host has its address and may write it. */
	return error;
}

/*
 * No module_exit, so the kernel refuses to unload the module: tasks may hold
 * its interrupt task work, and syscalls may be inside its wrappers, at any
 * time, and the host keeps the flag's address for the rest of the run.
 */
module_init(portal_init);
