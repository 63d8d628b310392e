#!/usr/bin/env python3
"""Writes tests/testdata/nf4/fixture.json: NF4 (QLoRA) quantisation worked out
independently of the C++ code, for tests/unit/nf4_ref_test.cc.

Pure Python (no numpy, no torch): fp32 rounding is emulated with
struct.pack('<f'), which rounds a double to the nearest float (ties to even).
Python floats are doubles, and for +, -, *, / of two floats the double result
rounded to float equals the correctly rounded float operation (53 >= 2*24 + 2
bits), so every fp32 step below is exactly the one the C++ and CUDA code must
perform.

The format, from the QLoRA paper (Dettmers et al. 2023, section 3) and
bitsandbytes:
  * blocks of 64 consecutive elements, each scaled by its largest magnitude
    (absmax, fp32) into [-1, 1] (fp32 division);
  * each scaled value mapped to the nearest of the 16 NF4 values (the paper's
    table below); "nearest" is decided by bitsandbytes' fp32 threshold
    literals (dQuantizeNF4), a value exactly on one takes the lower code, and
    an all-zero block gets the code of 0.0 (7);
  * two 4-bit codes per byte, the first element in the high nibble;
  * dequantised value = fp32(NF4 value * absmax).
Double quantisation of the block scales is the project's own (nf4.h):
offset = fp32(mean of absmax) with a fixed-order double sum (per group of 256
blocks, then over the groups), c = fp32(absmax - offset), per group
scale = fp32(max|c| / 127), q = clamp(round_half_even(fp32(c / scale)), +-127),
stored as q + 128, and absmax' = fp32(fp32(q * scale) + offset).

Also records the expected relative RMS error of NF4 (block 64) on N(0, 1)
data by Monte Carlo, with and without double quantisation.

Usage: python3 scripts/make_nf4_fixture.py [OUT] (default: the path above).
Takes about a minute.
"""

import bisect
import json
import math
import os
import random
import struct
import sys
from fractions import Fraction

# The 16 NF4 values as the paper / bitsandbytes list them (each an fp32 value).
NF4 = [
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634,
    0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0,
]
# bitsandbytes' dQuantizeNF4 pivots in ascending order, as the decimal
# literals of its source (C reads them as the nearest float).
THRESHOLD_LITERALS = [
    "-0.8480964004993439", "-0.6106329262256622", "-0.4599952697753906",
    "-0.33967943489551544", "-0.23460740596055984", "-0.13791173323988914",
    "-0.045525018125772476", "0.03979014977812767", "0.1202552504837513",
    "0.2035212516784668", "0.2920137718319893", "0.3893125355243683",
    "0.5016634166240692", "0.6427869200706482", "0.8614784181118011",
]
BLOCK = 64
GROUP = 256


def f32(x):
    """x (a double) rounded to the nearest fp32, ties to even."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def f32_bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def f32_next_up(x):
    bits = f32_bits(x)
    bits = bits + 1 if x >= 0 else bits - 1
    return struct.unpack("<f", struct.pack("<I", bits))[0]


def f32_of_decimal(text):
    """The fp32 nearest to a decimal string, exactly (no double in between)."""
    q = Fraction(text)
    sign = -1 if q < 0 else 1
    q = abs(q)
    e = q.numerator.bit_length() - q.denominator.bit_length()
    while Fraction(2) ** e > q:
        e -= 1
    while Fraction(2) ** (e + 1) <= q:
        e += 1
    ulp = Fraction(2) ** (e - 23)  # normal range: 24 significant bits
    n = q / ulp
    whole = n.numerator // n.denominator
    rest = n - whole
    if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and whole % 2 == 1):
        whole += 1
    return sign * float(whole * ulp)


THRESHOLDS = [f32_of_decimal(t) for t in THRESHOLD_LITERALS]


def check_tables():
    for v in NF4:
        assert f32(v) == v, v
    assert NF4 == sorted(NF4) and NF4[7] == 0.0
    for k, t in enumerate(THRESHOLDS):
        assert NF4[k] < t < NF4[k + 1]
        # Within one fp32 ulp of the true midpoint.
        mid = (Fraction(NF4[k]) + Fraction(NF4[k + 1])) / 2
        assert abs(Fraction(t) - mid) <= abs(Fraction(f32_next_up(t)) - Fraction(t))


def encode(xn, check):
    """Code of a scaled value: the number of thresholds strictly below it."""
    code = bisect.bisect_left(THRESHOLDS, xn)
    if not check:
        return code
    # Cross-check: the nearest NF4 value, unless xn sits within an ulp of a
    # midpoint (where the literal decides).
    dist = [abs(Fraction(xn) - Fraction(v)) for v in NF4]
    best = min(range(16), key=lambda k: (dist[k], k))
    if best != code:
        mid = (Fraction(NF4[min(best, code)]) + Fraction(NF4[max(best, code)])) / 2
        assert abs(best - code) == 1 and abs(Fraction(xn) - mid) < Fraction(1, 2**24), xn
    return code


def quantize(w, check=True):
    """w (list of fp32 values, len % 64 == 0) -> (codes, absmax)."""
    assert len(w) % BLOCK == 0
    codes, absmax = [], []
    for b in range(len(w) // BLOCK):
        block = w[b * BLOCK:(b + 1) * BLOCK]
        a = max(abs(x) for x in block)
        absmax.append(a)
        for x in block:
            codes.append(7 if a == 0.0 else encode(f32(x / a), check))
    return codes, absmax


def pack(codes):
    return bytes((codes[2 * i] << 4) | codes[2 * i + 1] for i in range(len(codes) // 2))


def unpack(packed):
    codes = []
    for byte in packed:
        codes += [byte >> 4, byte & 15]
    return codes


def dequantize(packed, absmax):
    codes = unpack(packed)
    return [f32(NF4[c] * absmax[i // BLOCK]) for i, c in enumerate(codes)]


def double_quantize(absmax):
    """absmax -> (q bytes, group scales, offset, absmax')."""
    blocks = len(absmax)
    groups = (blocks + GROUP - 1) // GROUP
    total = 0.0
    for g in range(groups):
        s = 0.0
        for a in absmax[g * GROUP:(g + 1) * GROUP]:
            s += a  # double, left to right
        total += s
    offset = f32(total / blocks)
    q_bytes, scales, deq = [], [], []
    for g in range(groups):
        centred = [f32(a - offset) for a in absmax[g * GROUP:(g + 1) * GROUP]]
        scale = f32(max(abs(c) for c in centred) / 127.0)
        scales.append(scale)
        for c in centred:
            q = 0 if scale == 0.0 else max(-127, min(127, round(f32(c / scale))))  # half even
            q_bytes.append(q + 128)
            deq.append(f32(f32(q * scale) + offset))
    return q_bytes, scales, offset, deq


def fnv1a64_f32(values):
    """FNV-1a (64-bit) over the little-endian fp32 bytes of values."""
    h = 0xCBF29CE484222325
    for v in values:
        for byte in struct.pack("<f", v):
            h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


class Lcg:
    """state = (state * 1103515245 + 12345) mod 2^31; next() returns
    (state >> 8) mod 65536 - 32768, an integer in [-32768, 32767]."""

    def __init__(self, seed):
        self.state = seed

    def next(self):
        self.state = (self.state * 1103515245 + 12345) % (1 << 31)
        return (self.state >> 8) % 65536 - 32768


def small_weight():
    """3 x 128 (6 blocks) of deliberately awkward values."""
    lcg = Lcg(2024)
    w = []
    # Block 0, absmax exactly 1: every NF4 value, every threshold (takes the
    # lower code) and the float just above it (the upper code), -0.0, and
    # 17 scattered values.
    b = list(NF4) + list(THRESHOLDS) + [f32_next_up(t) for t in THRESHOLDS] + [-0.0]
    b += [lcg.next() / 32768.0 for _ in range(64 - len(b))]
    w += b
    # Block 1: all zero (some negative zeros).
    w += [(-0.0 if i % 3 == 0 else 0.0) for i in range(64)]
    # Block 2: NF4 values times absmax 0.3 (round trip), 4 times, permuted.
    a = f32(0.3)
    w += [f32(NF4[(5 * i + i // 16) % 16] * a) for i in range(64)]
    # Block 3: the largest magnitude is negative (-2.5 gets code 0).
    b = [f32(2.49 * lcg.next() / 32768.0) for _ in range(64)]
    b[17] = -2.5
    w += b
    # Block 4: subnormal scale (values around 2^-130).
    w += [f32(lcg.next() * 2.0**-145) for _ in range(64)]
    # Block 5: large values with tiny ones among them (those get code 7).
    b = [f32(lcg.next() * 2.0**85) for _ in range(64)]
    for i in range(0, 64, 9):
        b[i] = f32(1e-30 * (i + 1))
    w += b
    assert len(w) == 3 * 128
    return w


def large_weight(blocks):
    """blocks * 64 values v * m_b * 2^-e_b with v from the LCG (seed 7),
    m_b = 16 + (7 b) mod 13, e_b = 17 + b mod 5; block 5 all zero, block 9
    zero but its first element. Every value is an exact fp32."""
    lcg = Lcg(7)
    w = []
    for i in range(blocks * BLOCK):
        b, j = divmod(i, BLOCK)
        v = lcg.next()
        x = float(v * (16 + (7 * b) % 13)) * 2.0 ** -(17 + b % 5)
        if b == 5 or (b == 9 and j > 0):
            x = 0.0
        assert f32(x) == x
        w.append(x)
    return w


def case(w, shape, full):
    codes, absmax = quantize(w)
    packed = pack(codes)
    deq = dequantize(packed, absmax)
    q, scales, offset, absmax_dq = double_quantize(absmax)
    deq_dq = dequantize(packed, absmax_dq)
    out = {
        "shape": shape,
        "packed_hex": packed.hex(),
        "absmax": absmax,
        "dequant_fnv1a": fnv1a64_f32(deq),
        "double_quant": {
            "absmax_q": q,
            "absmax_scale": scales,
            "absmax_offset": offset,
            "absmax_dequant": absmax_dq,
            "dequant_fnv1a": fnv1a64_f32(deq_dq),
        },
    }
    if full:
        out["weight"] = w
        out["dequant"] = deq
        out["double_quant"]["dequant"] = deq_dq
    return out


def normal_error(samples, seed):
    """Relative RMS error of NF4 (block 64) on N(0, 1) fp32 data: sqrt(mean
    (w - w')^2) / std(w), without and with double quantisation, and the
    standard error of the first from 32 batches."""
    rng = random.Random(seed)
    w = [f32(rng.gauss(0.0, 1.0)) for _ in range(samples)]
    codes, absmax = quantize(w, check=False)
    packed = pack(codes)
    _, _, _, absmax_dq = double_quantize(absmax)
    mean = sum(w) / samples
    var = sum((x - mean) ** 2 for x in w) / (samples - 1)
    result = {}
    for name, scales in (("rel_rms_error", absmax), ("rel_rms_error_double_quant", absmax_dq)):
        deq = dequantize(packed, scales)
        sq = [(x - y) ** 2 for x, y in zip(w, deq)]
        result[name] = math.sqrt(sum(sq) / samples / var)
        if name == "rel_rms_error":
            batches = 32
            size = samples // batches
            per = [math.sqrt(sum(sq[i * size:(i + 1) * size]) / size / var) for i in range(batches)]
            m = sum(per) / batches
            sd = math.sqrt(sum((p - m) ** 2 for p in per) / (batches - 1))
            result["rel_rms_error_stderr"] = sd / math.sqrt(batches)
    result.update({"samples": samples, "block": BLOCK, "seed": seed,
                   "generator": "python random.Random(seed).gauss(0, 1) rounded to fp32"})
    return result


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        here, "..", "tests", "testdata", "nf4", "fixture.json")
    check_tables()
    fixture = {
        "about": "NF4 fixture written by scripts/make_nf4_fixture.py (independent of the C++ code); "
                 "see that script and kernels/nf4/nf4.h for the format",
        "codes": NF4,
        "thresholds": THRESHOLDS,
        "block": BLOCK,
        "group": GROUP,
        "small": case(small_weight(), [3, 128], full=True),
        "large": dict(case(large_weight(300), [300, 64], full=False),
                      generator="LCG seed 7, see large_weight() in scripts/make_nf4_fixture.py"),
        "normal": normal_error(1 << 20, seed=1234),
    }
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    with open(out_path, "w") as f:
        json.dump(fixture, f, indent=1)
        f.write("\n")
    print("wrote", out_path, "; normal:", fixture["normal"])


if __name__ == "__main__":
    main()
