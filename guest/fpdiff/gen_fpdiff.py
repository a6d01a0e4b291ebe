#!/usr/bin/env python3
"""Generates the body of the fpdiff guest: a bare-metal program of random F/D instructions.

    gen_fpdiff.py SEED COUNT OUT.S

Each of the COUNT tested instructions is preceded by loads of fresh operands (most of the
time; otherwise it computes on what earlier instructions left in the registers) from tables
of edge values (+-0, +-inf, quiet and signalling NaNs, NaN-boxed and badly boxed singles,
subnormals, min/max normals, values next to integer conversion limits, ties) and followed by
a record of its destination register and of fflags (read and cleared) in the signature
array. fpdiff.c prints the signature; tests/guests runs the same ELF on QEMU and Tandem and
requires identical output. Rounding modes: every static mode and dynamic with frm set to
every valid mode. The tested instruction is emitted as a raw .word, so every field
(including rm of fcvt.d.s, fcvt.d.w, ...) is exactly what the generator chose.

Deterministic for a seed: only random.Random(seed).getrandbits is used.
"""
import struct
import sys


class Rng:
    def __init__(self, seed):
        import random
        self.r = random.Random(seed)

    def bits(self, n):
        return self.r.getrandbits(n)

    def below(self, n):
        # Rejection sampling on getrandbits only (stable across Python versions).
        k = max(1, (n - 1).bit_length())
        while True:
            v = self.r.getrandbits(k)
            if v < n:
                return v

    def pick(self, seq):
        return seq[self.below(len(seq))]

    def chance(self, percent):
        return self.below(100) < percent


def d(x):
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def s(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


BOX = 0xFFFFFFFF00000000

DOUBLES = [
    0, 1 << 63, d(1.0), d(-1.0), d(0.5), d(1.5), d(2.5), d(-2.5), d(3.0), d(0.1), d(1 / 3),
    0x7FF0000000000000, 0xFFF0000000000000,                      # +-inf
    0x7FF8000000000000, 0x7FF8000000000123, 0xFFF8000000000000,  # quiet NaNs
    0x7FF0000000000001, 0x7FF4000000000000, 0xFFF0000000000abc,  # signalling NaNs
    1, 0x8000000000000001, 0x000FFFFFFFFFFFFF, 0x800FFFFFFFFFFFFF,  # subnormals
    0x0008000000000000,
    0x0010000000000000, 0x8010000000000000, 0x0010000000000001,  # min normals
    0x7FEFFFFFFFFFFFFF, 0xFFEFFFFFFFFFFFFF, 0x7FEFFFFFFFFFFFFE,  # max normals
    0x3FEFFFFFFFFFFFFF, 0x3FF0000000000001, 0x3CA0000000000000,  # 1-ulp, 1+ulp, 2^-53
    d(2.0 ** 31), d(2.0 ** 31 - 1), d(2.0 ** 31 - 0.5), d(2.0 ** 31 + 0.5), d(-2.0 ** 31),
    d(-2.0 ** 31 - 0.5), d(-2.0 ** 31 - 1), d(2.0 ** 32), d(2.0 ** 32 - 1), d(2.0 ** 32 - 0.5),
    d(2.0 ** 63), d(-2.0 ** 63), d(2.0 ** 64), d(2.0 ** 63 - 1024), d(2.0 ** 64 - 2048),
    d(-0.5), d(-0.4), d(0.49999999999999994), d(2.0 ** 53 + 2), d(2.0 ** 52 + 0.5),
    d(1e300), d(-1e300), d(1e-300), d(3.4028235677973366e38), d(3.4028236e38),
    d(1.1754942e-38), d(1.401298464324817e-45), d(7.006492321624085e-46),
]
SINGLES = [
    0, 0x80000000, s(1.0), s(-1.0), s(0.5), s(1.5), s(2.5), s(-2.5), s(3.0), s(0.1), s(1 / 3),
    0x7F800000, 0xFF800000, 0x7FC00000, 0x7FC00123, 0xFFC00000,
    0x7F800001, 0x7FA00000, 0xFF800abc,
    1, 0x80000001, 0x007FFFFF, 0x807FFFFF, 0x00400000,
    0x00800000, 0x80800000, 0x00800001, 0x7F7FFFFF, 0xFF7FFFFF, 0x7F7FFFFE,
    0x3F7FFFFF, 0x3F800001, 0x33800000,
    s(2.0 ** 31), s(-2.0 ** 31), s(2.0 ** 32), s(2.0 ** 63), s(-2.0 ** 63), s(2.0 ** 64),
    s(2.0 ** 31 - 128), s(-0.5), s(-0.4), s(2.0 ** 24 + 2), s(2.0 ** 23 + 0.5),
    s(1e38), s(-1e38), s(1e-38), s(16777216.0), s(0.75),
]
INTS = [
    0, 1, 2, 3, 0xFFFFFFFFFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF80000000, 0xFFFFFFFF,
    0x100000000, 0x7FFFFFFFFFFFFFFF, 0x8000000000000000, (1 << 53) + 1, (1 << 24) + 1,
    0x00000000FFFFFFFE, 0xFFFFFFFF7FFFFFFF, 0x1000001, 0x20000000000001, 12345678901234567,
    0xFFFFFFFFFFFFFFFE, 0x7FFFFF80, 0xFFFFFF7F, 0xFEDCBA9876543210,
]

# (name, opcode kind, fmt, operands)  kinds: "r" OP-FP with rm, "rf" OP-FP fixed f3,
# "r4" fused multiply-add. Destination "x" = integer register.
# Entries: (mnemonic, encoder args, source kinds, destination kind, uses rm)
FUNCS = []
for fmt, fs in ((0, "s"), (1, "d")):
    for f5, name in ((0x00, "fadd"), (0x01, "fsub"), (0x02, "fmul"), (0x03, "fdiv")):
        FUNCS.append((f"{name}.{fs}", ("op", f5, fmt, None), "ff", "f", True))
    FUNCS.append((f"fsqrt.{fs}", ("op", 0x0B, fmt, 0), "f", "f", True))
    for f3, name in ((0, "fsgnj"), (1, "fsgnjn"), (2, "fsgnjx")):
        FUNCS.append((f"{name}.{fs}", ("fix", 0x04, fmt, None, f3), "ff", "f", False))
    for f3, name in ((0, "fmin"), (1, "fmax")):
        FUNCS.append((f"{name}.{fs}", ("fix", 0x05, fmt, None, f3), "ff", "f", False))
    for f3, name in ((2, "feq"), (1, "flt"), (0, "fle")):
        FUNCS.append((f"{name}.{fs}", ("fix", 0x14, fmt, None, f3), "ff", "x", False))
    FUNCS.append((f"fclass.{fs}", ("fix", 0x1C, fmt, 0, 1), "f", "x", False))
    FUNCS.append((f"fmv.x.{'w' if fmt == 0 else 'd'}", ("fix", 0x1C, fmt, 0, 0), "f", "x", False))
    FUNCS.append((f"fmv.{'w' if fmt == 0 else 'd'}.x", ("fix", 0x1E, fmt, 0, 0), "x", "f", False))
    for rs2, it in ((0, "w"), (1, "wu"), (2, "l"), (3, "lu")):
        FUNCS.append((f"fcvt.{it}.{fs}", ("op", 0x18, fmt, rs2), "f", "x", True))
        FUNCS.append((f"fcvt.{fs}.{it}", ("op", 0x1A, fmt, rs2), "x", "f", True))
    for opc, name in ((0x43, "fmadd"), (0x47, "fmsub"), (0x4B, "fnmsub"), (0x4F, "fnmadd")):
        FUNCS.append((f"{name}.{fs}", ("r4", opc, fmt), "fff", "f", True))
FUNCS.append(("fcvt.s.d", ("op", 0x08, 0, 1), "f", "f", True))
FUNCS.append(("fcvt.d.s", ("op", 0x08, 1, 0), "f", "f", True))
FUNCS.append(("flw", ("flw",), "m", "f", False))

RMS = [0, 1, 2, 3, 4, 7]


def encode(enc, rd, rs, rm):
    kind = enc[0]
    if kind == "op":
        _, f5, fmt, fixed_rs2 = enc
        rs2 = fixed_rs2 if fixed_rs2 is not None else rs[1]
        return (f5 << 27) | (fmt << 25) | (rs2 << 20) | (rs[0] << 15) | (rm << 12) | (rd << 7) | 0x53
    if kind == "fix":
        _, f5, fmt, fixed_rs2, f3 = enc
        rs2 = fixed_rs2 if fixed_rs2 is not None else rs[1]
        return (f5 << 27) | (fmt << 25) | (rs2 << 20) | (rs[0] << 15) | (f3 << 12) | (rd << 7) | 0x53
    if kind == "r4":
        _, opc, fmt = enc
        return (rs[2] << 27) | (fmt << 25) | (rs[1] << 20) | (rs[0] << 15) | (rm << 12) | (rd << 7) | opc
    raise ValueError(kind)


def main():
    seed, count, out = int(sys.argv[1], 0), int(sys.argv[2]), sys.argv[3]
    rng = Rng(seed)
    # The operand table: doubles, boxed singles, badly boxed singles, random patterns.
    table = []
    table += DOUBLES
    table += [BOX | v for v in SINGLES]
    table += [v for v in SINGLES[:12]]                           # upper half zero: not boxed
    table += [0x12345678_00000000 | v for v in SINGLES[12:20]]  # garbage upper half
    while len(table) < 250:
        if rng.chance(50):
            table.append(rng.bits(64))
        else:
            table.append(BOX | rng.bits(32))
    ndouble = len(DOUBLES)
    nsingle = len(SINGLES)

    def operand_index(fmt):
        # Mostly values of the instruction's own format.
        r = rng.below(100)
        if fmt == 1:
            return rng.below(ndouble) if r < 80 else rng.below(len(table))
        if r < 80:
            return ndouble + rng.below(nsingle)
        return rng.below(len(table))

    lines = [
        "# Generated by gen_fpdiff.py (seed %#x, %d instructions). Do not edit." % (seed, count),
        "    .section .text",
        "    .globl fpdiff_run",
        "    .option rvc",
        "# a0 = signature array (2 x u64 per instruction). Clobbers only caller-saved state",
        "# and s0/s1, which it saves.",
        "fpdiff_run:",
        "    addi sp, sp, -16",
        "    sd s0, 0(sp)",
        "    sd s1, 8(sp)",
        "    mv s1, a0",
        "    la s0, fpdiff_fvals",
        "    la t1, fpdiff_ivals",
        "    csrwi fflags, 0",
        "    csrwi frm, 0",
    ]
    frm = 0
    for i in range(count):
        name, enc, srcs, dst, uses_rm = rng.pick(FUNCS)
        fmt = 1 if name.endswith(".d") or name in ("fcvt.s.d", "fmv.d.x") else 0
        if name == "fcvt.d.s":
            fmt = 0
        lines.append(f"    # {i}: {name}")
        rs = []
        for kind in srcs:
            if kind == "f":
                r = rng.below(32)
                if rng.chance(75):
                    lines.append(f"    fld f{r}, {8 * operand_index(fmt)}(s0)")
                rs.append(r)
            elif kind == "x":
                lines.append(f"    ld a1, {8 * rng.below(len(INTS))}(t1)")
                rs.append(11)
            elif kind == "m":
                # flw of either half of a table entry (boxes whatever it finds).
                rs.append(8)
        rd = rng.below(32)
        rm = 0
        if uses_rm:
            rm = rng.pick(RMS)
            if rm == 7 and rng.chance(60):
                frm = rng.below(5)
                lines.append(f"    csrwi frm, {frm}")
        if enc[0] == "flw":
            off = 4 * rng.below(2 * len(table))
            lines.append(f"    flw f{rd}, {off}(s0)")
        else:
            if dst == "x":
                rd_enc = 12  # a2
            else:
                rd_enc = rd
            lines.append(f"    .word {encode(enc, rd_enc, rs, rm):#010x}")
        if dst == "x":
            lines.append("    sd a2, 0(s1)")
        else:
            lines.append(f"    fsd f{rd}, 0(s1)")
        lines.append("    csrrw a3, fflags, zero")
        lines.append("    sd a3, 8(s1)")
        lines.append("    addi s1, s1, 16")
    lines += [
        "    ld s0, 0(sp)",
        "    ld s1, 8(sp)",
        "    addi sp, sp, 16",
        "    ret",
        "",
        "    .section .rodata",
        "    .balign 8",
        "fpdiff_fvals:",
    ]
    lines += [f"    .dword {v:#018x}" for v in table]
    lines.append("fpdiff_ivals:")
    lines += [f"    .dword {v:#018x}" for v in INTS]
    lines.append("")
    with open(out, "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
