# Guest entry. QEMU `-bios none` and Tandem both start every hart at 0x8000_0000 in M-mode
# with a0 = hartid, a1 = DTB address. Hart 0 runs main(); any other hart parks in WFI.
    .section .text.init, "ax"
    .globl _start
_start:
    .option push
    .option norelax
    la      gp, __global_pointer$
    .option pop
    csrr    t0, mhartid
    bnez    t0, park
    la      sp, __stack_top
    la      t0, __bss_start
    la      t1, __bss_end
1:  bgeu    t0, t1, 2f
    sd      zero, 0(t0)
    addi    t0, t0, 8
    j       1b
2:  la      t0, m_trap_entry
    csrw    mtvec, t0
#ifdef __riscv_flen
    # Built with F/D: turn the FPU on (mstatus.FS = Initial) before C code can use it.
    li      t0, 1 << 13
    csrs    mstatus, t0
    fscsr   zero
#endif
    call    main
    # main's return value is the exit status: 0 = pass, anything else = fail code.
    call    guest_exit
park:
    wfi
    j       park
