//! Statistics shared by the benchmark programs.

#![allow(dead_code)] // each benchmark uses a part

use std::time::Duration;

/// The median of `xs` (the upper one for an even count).
pub(crate) fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort_unstable();
    xs[xs.len() / 2]
}

/// The `p`-quantile of `xs` (0.5: the median, 0.99: the 99th percentile); sorts `xs`.
pub(crate) fn percentile(xs: &mut [Duration], p: f64) -> Duration {
    xs.sort_unstable();
    xs[((xs.len() as f64 * p) as usize).min(xs.len() - 1)]
}
