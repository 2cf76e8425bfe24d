//! Methods as jobs, with automatic differentiation: a port of Parallel Python's
//! `auto_diff.py`.
//!
//! A [`Dual`] number carries a value and a derivative through arithmetic (forward-mode
//! automatic differentiation). [`PartialSum::t_log`] computes the Taylor series of ln(x)
//! around 1 with `n` terms; `#[pp::parallel]` on its impl block makes the method a job,
//! `PartialSum::T_LOG`, submitted with the object as first argument. The example runs it
//! on 32 points x = i/32 + 1 (derivative 1) and prints t_log(x) beside ln(x) and
//! t_log'(x) beside 1/x.
//!
//! Run it with `cargo run --release --example auto_diff [ncpus]`; without `ncpus` the
//! server starts one worker per core.

pub(crate) mod common;

use serde::{Deserialize, Serialize};
use std::ops::{Add, Div, Mul, Neg, Sub};
use std::process::ExitCode;
use std::time::Instant;

/// Number of terms of the Taylor series, as in PP's example.
pub(crate) const TERMS: u64 = 20_000;
/// Number of points.
pub(crate) const POINTS: u32 = 32;

/// A dual number `value + deriv·ε` with ε² = 0: arithmetic on it carries the derivative
/// along with the value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct Dual {
    /// The value f(x).
    pub(crate) value: f64,
    /// The derivative f'(x).
    pub(crate) deriv: f64,
}

impl Dual {
    /// A dual number from its parts.
    pub(crate) const fn new(value: f64, deriv: f64) -> Dual {
        Dual { value, deriv }
    }

    /// The variable x at `x`: derivative 1.
    pub(crate) const fn variable(x: f64) -> Dual {
        Dual::new(x, 1.0)
    }

    /// A constant: derivative 0.
    pub(crate) const fn constant(c: f64) -> Dual {
        Dual::new(c, 0.0)
    }
}

impl Add for Dual {
    type Output = Dual;
    fn add(self, rhs: Dual) -> Dual {
        Dual::new(self.value + rhs.value, self.deriv + rhs.deriv)
    }
}

impl Sub for Dual {
    type Output = Dual;
    fn sub(self, rhs: Dual) -> Dual {
        Dual::new(self.value - rhs.value, self.deriv - rhs.deriv)
    }
}

impl Mul for Dual {
    type Output = Dual;
    fn mul(self, rhs: Dual) -> Dual {
        Dual::new(
            self.value * rhs.value,
            self.deriv * rhs.value + self.value * rhs.deriv,
        )
    }
}

impl Div for Dual {
    type Output = Dual;
    fn div(self, rhs: Dual) -> Dual {
        Dual::new(
            self.value / rhs.value,
            (self.deriv * rhs.value - self.value * rhs.deriv) / (rhs.value * rhs.value),
        )
    }
}

impl Neg for Dual {
    type Output = Dual;
    fn neg(self) -> Dual {
        Dual::new(-self.value, -self.deriv)
    }
}

impl Add<f64> for Dual {
    type Output = Dual;
    fn add(self, rhs: f64) -> Dual {
        self + Dual::constant(rhs)
    }
}

impl Sub<f64> for Dual {
    type Output = Dual;
    fn sub(self, rhs: f64) -> Dual {
        self - Dual::constant(rhs)
    }
}

impl Mul<f64> for Dual {
    type Output = Dual;
    fn mul(self, rhs: f64) -> Dual {
        Dual::new(self.value * rhs, self.deriv * rhs)
    }
}

impl Div<f64> for Dual {
    type Output = Dual;
    fn div(self, rhs: f64) -> Dual {
        Dual::new(self.value / rhs, self.deriv / rhs)
    }
}

/// The Taylor series of ln(x) around 1, cut after `n` terms (PP's `PartialSum` class).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PartialSum {
    /// Number of terms.
    pub(crate) n: u64,
}

#[pp::parallel]
impl PartialSum {
    /// The series with `n` terms. An associated function: `#[pp::parallel]` leaves it alone.
    pub(crate) fn new(n: u64) -> PartialSum {
        PartialSum { n }
    }

    /// ln(x) ≈ Σ_{k=1..n} (-1)^(k+1) (x-1)^k / k, with its derivative when `x` carries one.
    /// Converges for 0 < x ≤ 2. A method: `PartialSum::T_LOG` is its job.
    pub(crate) fn t_log(&self, x: Dual) -> Dual {
        let y = x - 1.0;
        let mut power = y; // y^k
        let mut sum = Dual::constant(0.0);
        for k in 1..=self.n {
            let term = power / k as f64;
            sum = if k % 2 == 1 { sum + term } else { sum - term };
            power = power * y;
        }
        sum
    }
}

/// The 32 points x = i/32 + 1, i in 0..32.
pub(crate) fn points() -> impl Iterator<Item = f64> {
    (0..POINTS).map(|i| f64::from(i) / f64::from(POINTS) + 1.0)
}

/// Runs the example on `server`: one `PartialSum::T_LOG` job per point, each on a copy of
/// the same `PartialSum`; returns `(x, t_log(x) as a dual number)` for every point.
pub(crate) fn run(server: &pp::Server) -> Result<Vec<(f64, Dual)>, pp::JobError> {
    let ps = PartialSum::new(TERMS);
    let jobs: Vec<_> = points()
        .map(|x| {
            let job = server.submit(PartialSum::T_LOG, (ps.clone(), Dual::variable(x)));
            (x, job)
        })
        .collect();
    jobs.into_iter()
        .map(|(x, job)| Ok((x, job.result()?)))
        .collect()
}

fn main() -> ExitCode {
    common::main_with_server("auto_diff", |server| {
        let start = Instant::now();
        for (x, t) in run(server)? {
            println!(
                "t_log({x:.5}) = {:.12}, ln({x:.5}) = {:.12}; t_log'({x:.5}) = {:.12}, 1/{x:.5} = {:.12}",
                t.value,
                x.ln(),
                t.deriv,
                1.0 / x
            );
        }
        println!("Time elapsed: {:.3} s", start.elapsed().as_secs_f64());
        Ok(())
    })
}
