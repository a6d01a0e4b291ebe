# Trap sites: one tiny function per faulting instruction, so the C side knows the exact
# address (the function's entry) where each trap must be reported.
    .text
.macro SITE name
    .globl \name
    .balign 4
\name:
.endm

SITE site_ecall
    ecall
    ret
SITE site_ebreak
    .option push
    .option norvc
    ebreak
    .option pop
    ret
SITE site_c_ebreak
    .option push
    .option rvc
    c.ebreak
    .option pop
    ret
# The canonical 32-bit "unimp": csrrw zero, cycle, zero (a write to a read-only CSR).
SITE site_unimp
    .word 0xc0001073
    ret
# The all-zero 16-bit parcel is defined to be illegal.
SITE site_c_unimp
    .half 0x0000
    ret
# csrr a0, mstatus: legal only in M-mode.
SITE site_read_mstatus
    .word 0x30002573
    ret
# sret: illegal in U-mode.
SITE site_sret
    .word 0x10200073
    ret
# a0 = address
SITE site_load
    ld      a0, 0(a0)
    ret
SITE site_store
    sd      zero, 0(a0)
    ret
SITE site_amoadd_w
    amoadd.w a0, a1, (a0)
    ret
SITE site_lr_w
    lr.w    a0, (a0)
    ret
