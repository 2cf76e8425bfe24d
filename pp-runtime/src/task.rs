//! Task descriptors: what `#[pp::parallel]` turns a function into.
//!
//! A [`Task`] pairs a plain function pointer with a stable id and a fingerprint of its
//! signature. It dereferences to the function pointer, so a call such as `sum_primes(100)`
//! still compiles after the attribute turned `sum_primes` into a `const` descriptor.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;
use std::ops::Deref;

/// A value that can travel as a job argument or result: serde-encodable, owned, `Send`.
///
/// Implemented for every type that satisfies the bounds; it only exists to give a clear
/// message when a type does not.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot cross a job boundary: job arguments and results must be owned serde types",
    label = "this type must implement `Serialize`, `DeserializeOwned` and `Send`, and own its data",
    note = "derive `serde::Serialize` and `serde::Deserialize` for it, or pass an owned type (`String` for `&str`, `Vec<T>` for `&[T]`)"
)]
pub trait Portable: Serialize + DeserializeOwned + Send + 'static {}

impl<T: Serialize + DeserializeOwned + Send + 'static> Portable for T {}

/// A function pointer type that can be run as a job: `fn(A1, ..., An) -> R` with
/// 0 to 12 [`Portable`] arguments and a [`Portable`] result.
pub trait TaskFn: Copy + Send + Sync + 'static {
    /// The arguments as a tuple: `()` , `(A,)`, `(A, B)`, ...
    type Args: Portable;
    /// The function's result.
    type Output: Portable;
    /// Calls the function with the arguments spread out of the tuple.
    fn call(self, args: Self::Args) -> Self::Output;
}

macro_rules! impl_task_fn {
    ($($arg:ident),*) => {
        impl<$($arg: Portable,)* R: Portable> TaskFn for fn($($arg),*) -> R {
            type Args = ($($arg,)*);
            type Output = R;
            #[allow(non_snake_case)]
            #[inline]
            fn call(self, ($($arg,)*): Self::Args) -> R {
                (self)($($arg),*)
            }
        }
    };
}

impl_task_fn!();
impl_task_fn!(A1);
impl_task_fn!(A1, A2);
impl_task_fn!(A1, A2, A3);
impl_task_fn!(A1, A2, A3, A4);
impl_task_fn!(A1, A2, A3, A4, A5);
impl_task_fn!(A1, A2, A3, A4, A5, A6);
impl_task_fn!(A1, A2, A3, A4, A5, A6, A7);
impl_task_fn!(A1, A2, A3, A4, A5, A6, A7, A8);
impl_task_fn!(A1, A2, A3, A4, A5, A6, A7, A8, A9);
impl_task_fn!(A1, A2, A3, A4, A5, A6, A7, A8, A9, A10);
impl_task_fn!(A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11);
impl_task_fn!(A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11, A12);

/// A registered job: a function pointer with its stable id and signature fingerprint.
///
/// Made by `#[pp::parallel]`; pass it to [`Server::submit`](crate::Server::submit).
/// It dereferences to the function, so it can still be called directly.
pub struct Task<F> {
    id: &'static str,
    fingerprint: u64,
    func: F,
}

impl<F> Task<F> {
    /// Builds a descriptor. Called by code that `#[pp::parallel]` generates; the id must be
    /// unique in the program (module path and name) and match the registry entry.
    #[doc(hidden)]
    pub const fn new(id: &'static str, fingerprint: u64, func: F) -> Self {
        Task {
            id,
            fingerprint,
            func,
        }
    }

    /// The stable id: the module path and the function's name, e.g. `sum_primes::sum_primes`.
    pub fn id(&self) -> &'static str {
        self.id
    }

    /// A hash of the function's signature as written, used to check that a remote worker
    /// runs the same task.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// The plain function pointer.
    pub fn function(&self) -> &F {
        &self.func
    }
}

impl<F: Copy> Clone for Task<F> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<F: Copy> Copy for Task<F> {}

impl<F> Deref for Task<F> {
    type Target = F;

    fn deref(&self) -> &F {
        &self.func
    }
}

impl<F> fmt::Debug for Task<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("id", &self.id)
            .field("fingerprint", &format_args!("{:016x}", self.fingerprint))
            .finish()
    }
}

/// 64-bit FNV-1a, usable in `const` contexts; the macros hash signatures with it.
pub const fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}
