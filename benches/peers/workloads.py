"""The benchmark's job functions in Python, the same arithmetic as pp's examples.

- sum_primes: examples/sum_primes.rs (trial division while d*d <= n), the eight inputs
  100000, 100100, ..., 100700;
- part_sum: examples/common/mod.rs (the ln 2 series over 1..20,000,000), 128 jobs;
- md5_test: examples/reverse_md5.rs (the first number in start..end whose decimal text has
  the given md5 digest), 128 jobs over 1..2,000,000;
- add_one: the tiny job of benches/peers.rs.

The ranges come from `split`, the examples' `common::split`. The functions take and
return plain ints, floats and strings, so ppft can ship their source and every peer can
pickle them.
"""

import hashlib
import math

SUM_PRIMES_INPUTS = [100000 + 100 * i for i in range(8)]
SUM_PRIMES_EXPECTED = [
    454396537,
    454996777,
    455898156,
    456700218,
    457603451,
    458407033,
    459412387,
    460217613,
]
LN2_START, LN2_END, LN2_PARTS = 1, 20000000, 128
LN2_TOLERANCE = 3e-8
MD5_SECRET, MD5_START, MD5_END, MD5_PARTS = 1829182, 1, 2000000, 128


def isprime(n):
    """Whether n is prime, by trial division (examples/sum_primes.rs `is_prime`)."""
    if n < 2:
        return False
    d = 2
    while d * d <= n:
        if n % d == 0:
            return False
        d += 1
    return True


def sum_primes(n):
    """Sum of the primes below n."""
    return sum(k for k in range(2, n) if isprime(k))


def part_sum(start, end):
    """Sum of (-1)^(k+1) / k for k in start..end."""
    s = 0.0
    for k in range(start, end):
        t = 1.0 / k
        if k % 2 == 0:
            s -= t
        else:
            s += t
    return s


def md5_test(hexdigest, start, end):
    """The first number in start..end whose decimal text has md5 `hexdigest`, or None."""
    target = bytes.fromhex(hexdigest)
    for x in range(start, end):
        if hashlib.md5(str(x).encode()).digest() == target:
            return x
    return None


def add_one(x):
    """The tiny job."""
    return x + 1


def split(start, end, parts):
    """`parts` consecutive ranges of equal length (the last may be shorter)."""
    step = max(-(-max(end - start, 0) // max(parts, 1)), 1)
    out = []
    for i in range(parts):
        lo = min(start + i * step, end)
        out.append((lo, min(lo + step, end)))
    return out


def md5_hex(text):
    return hashlib.md5(text.encode()).hexdigest()


def check_sum_primes(results):
    if list(results) != SUM_PRIMES_EXPECTED:
        raise ValueError("sum_primes gave %r" % (list(results),))


def check_ln2(parts):
    total = 0.0
    for p in parts:
        total += p
    if not abs(total - math.log(2)) < LN2_TOLERANCE:
        raise ValueError("ln2 gave %r, off by %r" % (total, total - math.log(2)))


def check_md5(results):
    hits = [r for r in results if r is not None]
    if hits != [MD5_SECRET]:
        raise ValueError("md5 found %r" % (hits,))
