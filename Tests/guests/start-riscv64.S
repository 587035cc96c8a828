/* start-riscv64.S - entry for qemu-system-riscv64 -M virt -bios none: the
 * reset vector jumps here in M-mode. */
    .section .text.boot, "ax"
    .option norelax
    .globl _start
_start:
    la sp, __stack_top
    la t0, trap_entry
    csrw mtvec, t0
    call guest_main
1:  wfi
    j 1b

    .balign 4
trap_entry:
    la sp, __exc_stack_top
    li a0, 0
    li a1, 0
    call guest_exception
2:  j 2b
