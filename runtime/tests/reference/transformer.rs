//! Naive references for the transformer ops, written from the arithmetic contract (`docs/arithmetic.md`,
//! "Transformer ops"). Every sum is `i128`; square roots and quotients are found by search from their
//! definitions, not by the runtime's algorithms.

use super::{div_pow2_round_half_away, requant_code};
use qfd_runtime::format::Clamp;
use qfd_runtime::kernels::reference::ExpParams;
use qfd_runtime::requant::RequantParams;

/// The largest `r` with `r * r <= v`, by bisection.
pub fn floor_sqrt(v: u128) -> u128 {
    let (mut lo, mut hi) = (0u128, 1u128 << 64);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if mid * mid <= v {
            lo = mid
        } else {
            hi = mid
        }
    }
    lo
}

/// Bits of `v` (`0` for `0`).
fn bit_length(v: u128) -> u32 {
    128 - v.leading_zeros()
}

/// The normalized values of one token: `round_half_away((C x_c - sum) * inv / 2^(62 - e - 16))` with
/// `x = (code - zero) << shift`, `V = C sum(x^2) - sum^2`, `e = (62 - bits(V)) / 2`,
/// `inv = round_half_up(2^62 / floor_sqrt(V * 4^e))`; all 0 when `V = 0`.
pub fn normalized_token(codes: &[u8], zero: u8, shifts: &[u8]) -> Vec<i128> {
    let x: Vec<i128> = codes.iter().zip(shifts).map(|(&k, &s)| (k as i128 - zero as i128) << s).collect();
    let n = x.len() as i128;
    let sum: i128 = x.iter().sum();
    let variance = n * x.iter().map(|v| v * v).sum::<i128>() - sum * sum;
    assert!(variance >= 0);
    if variance == 0 {
        return vec![0; x.len()];
    }
    let e = 62u32.saturating_sub(bit_length(variance as u128)) / 2;
    let root = floor_sqrt((variance as u128) << (2 * e));
    let inv = ((1u128 << 62) + root / 2) / root;
    x.iter().map(|&v| div_pow2_round_half_away((n * v - sum) * inv as i128, 62 - e - 16)).collect()
}

/// LayerNorm of `tokens x channels` codes: each token normalized, then channel `c`'s requantization.
pub fn layer_norm(
    codes: &[u8],
    channels: usize,
    zero: u8,
    shifts: &[u8],
    requant: &[RequantParams],
    clamp: Clamp,
) -> Vec<u8> {
    codes
        .chunks(channels)
        .flat_map(|token| {
            normalized_token(token, zero, shifts)
                .into_iter()
                .enumerate()
                .map(|(c, v)| requant_code(v, requant[c], clamp))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The integer exponential term for `d <= 0`: `D = d * 2^P` is raised to `n x0` at the lowest, split as
/// `D = q x0 + r` with `x0 < r <= 0` (Euclid), and `e = max(r (r + b) + c, 0) * 2^(n - q)`.
pub fn exp_term(d: i128, p: &ExpParams) -> u128 {
    let (x0, b, c, n) = (p.x0 as i128, p.b as i128, p.c as i128, p.shift as u32);
    assert!(d <= 0 && x0 < 0);
    let d = (d * (1i128 << p.fraction)).max(n as i128 * x0);
    let mut q = 0i128;
    while d - q * x0 <= x0 {
        q += 1;
    }
    let r = d - q * x0;
    let z = (r * (r + b) + c).max(0) as u128;
    z << (n as i128 - q) as u32
}

/// The log2 code of `e` among terms summing to `sum`: how many `i >= 0` have `3 e 2^i <= 2 sum`, at
/// most 15; 15 also for `e = 0`.
pub fn log2_code(e: u128, sum: u128) -> u8 {
    if e == 0 {
        return 15;
    }
    let mut k = 0u32;
    while k < 15 && 3 * e * (1u128 << k) <= 2 * sum {
        k += 1;
    }
    k as u8
}

/// The linear code of `e`: with `drop = max(bits(sum) - 31, 0)`, `e' = e >> drop`, `s' = sum >> drop`,
/// `round_half_up(e' * (2^bits - 1) / s')`.
pub fn linear_code(e: u128, sum: u128, bits: u8) -> u8 {
    let drop = bit_length(sum).saturating_sub(31);
    let (e, sum) = (e >> drop, sum >> drop);
    let m = (1u128 << bits) - 1;
    let q = e * m / sum;
    let rem = e * m - q * sum;
    (if 2 * rem >= sum { q + 1 } else { q }) as u8
}

/// The integer weight of a probability code: `2^(14 - k)` for log2 codes below 15, 0 for 15; the code
/// itself for linear codes.
pub fn prob_weight(code: u8, log2: bool) -> i128 {
    match (log2, code) {
        (true, 15..) => 0,
        (true, k) => 1 << (14 - k),
        (false, k) => k as i128,
    }
}

/// `sum_c (q[i, h d + c] - zq)(k[j, h d + c] - zk)` for every head, query and key, laid out `[h][i][j]`.
pub fn scores(q: &[u8], k: &[u8], tokens: usize, heads: usize, d: usize, zeros: [u8; 2]) -> Vec<i128> {
    let ch = heads * d;
    let mut out = vec![];
    for h in 0..heads {
        for i in 0..tokens {
            for j in 0..tokens {
                out.push(
                    (0..d)
                        .map(|c| {
                            (q[i * ch + h * d + c] as i128 - zeros[0] as i128)
                                * (k[j * ch + h * d + c] as i128 - zeros[1] as i128)
                        })
                        .sum(),
                );
            }
        }
    }
    out
}

/// `sum_j weight(p[h][i][j]) (v[j, h d + c] - zv)` for every token `i` and channel `h d + c`.
pub fn values(p: &[u8], v: &[u8], tokens: usize, heads: usize, d: usize, log2: bool, zero: u8) -> Vec<i128> {
    let ch = heads * d;
    let mut out = vec![0i128; tokens * ch];
    for i in 0..tokens {
        for h in 0..heads {
            for c in 0..d {
                out[i * ch + h * d + c] = (0..tokens)
                    .map(|j| {
                        prob_weight(p[(h * tokens + i) * tokens + j], log2)
                            * (v[j * ch + h * d + c] as i128 - zero as i128)
                    })
                    .sum();
            }
        }
    }
    out
}
