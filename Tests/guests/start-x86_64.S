/* start-x86_64.S - multiboot (v1) entry for qemu-system-x86_64 -kernel,
 * then the switch to long mode. QEMU's multiboot loader accepts only 32-bit
 * ELF files, so build.sh links a 64-bit ELF and rewrites it as ELF32
 * (llvm-objcopy -O elf32-i386); this code starts in 32-bit protected mode.
 * It identity-maps the first 1 GiB with 2 MiB pages, enables PAE and
 * EFER.LME, turns paging on and far-jumps into a 64-bit code segment. */
    .section .multiboot, "a"
    .balign 4
    .long 0x1badb002
    .long 0
    .long -0x1badb002

    .section .text.boot, "ax"
    .code32
    .globl _start
_start:
    mov $__stack_top, %esp
    /* clear the three tables (RAM is zero at boot, but do not rely on it) */
    mov $pt_pml4, %edi
    xor %eax, %eax
    mov $(3 * 4096 / 4), %ecx
    cld
    rep stosl
    /* pd[i] = i * 2 MiB | present | writable | page size */
    mov $pt_pd, %edi
    mov $0x83, %eax
    mov $512, %ecx
1:  mov %eax, (%edi)
    movl $0, 4(%edi)
    add $0x200000, %eax
    add $8, %edi
    loop 1b
    mov $pt_pdpt, %eax
    or $3, %eax
    mov %eax, pt_pml4
    movl $0, pt_pml4 + 4
    mov $pt_pd, %eax
    or $3, %eax
    mov %eax, pt_pdpt
    movl $0, pt_pdpt + 4
    mov %cr4, %eax
    or $0x20, %eax                    /* CR4.PAE */
    mov %eax, %cr4
    mov $pt_pml4, %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx             /* IA32_EFER */
    rdmsr
    or $0x100, %eax                   /* LME */
    wrmsr
    mov %cr0, %eax
    or $0x80000001, %eax              /* PG | PE */
    mov %eax, %cr0
    lgdt gdt_ptr
    ljmp $0x08, $long_mode

    .code64
long_mode:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %ax, %fs
    mov %ax, %gs
    mov $__stack_top, %rsp
    call guest_main
2:  cli
    hlt
    jmp 2b

    .balign 8
gdt:
    .quad 0
    .quad 0x00af9a000000ffff          /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff          /* 0x10: data */
gdt_end:
gdt_ptr:
    .word gdt_end - gdt - 1
    .long gdt

    .section .pagetables, "aw", @nobits
    .balign 4096
pt_pml4: .space 4096
pt_pdpt: .space 4096
pt_pd:   .space 4096
