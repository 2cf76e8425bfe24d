#![deny(missing_docs)]
//! A documented job stays documented.

/// Doubles `x`.
///
/// The doc comment goes to the task descriptor.
#[pp::parallel]
#[inline]
pub fn double(x: u64) -> u64 {
    x * 2
}

/// Triples `x`; the attribute may come after other attributes too.
#[inline(always)]
#[pp::parallel]
pub fn triple(x: u64) -> u64 {
    x * 3
}

fn main() {
    assert_eq!(double(21), 42);
    assert_eq!(triple(14), 42);
    let server = pp::Server::builder().ncpus(1).build().unwrap();
    assert_eq!(server.submit(double, (21,)).result().unwrap(), 42);
    assert_eq!(server.submit(triple, (14,)).result().unwrap(), 42);
}
