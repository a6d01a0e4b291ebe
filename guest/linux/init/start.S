# The entry point of /init. The kernel starts a static ELF with sp at argc/argv/envp and
# every other register zero; gp must be set before any gp-relative (relaxed) access.
    .section .text.start, "ax"
    .globl _start
_start:
    .option push
    .option norelax
    la gp, __global_pointer$
    .option pop
    call init_main
1:  j 1b  # init_main never returns
