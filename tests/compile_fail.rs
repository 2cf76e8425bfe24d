//! Compile-time checks of `#[pp::parallel]`: every misuse is a compile error with a clear
//! message at the offending span (snapshots in `tests/ui/fail/*.stderr`), and the supported
//! shapes (no or twelve arguments, patterns, methods using `Self`, attributes, modules,
//! recursion) compile and run, both as plain calls and as jobs (`tests/ui/pass`).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
