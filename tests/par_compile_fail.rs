//! Compile-time checks of `par!`: every misuse is a compile error with a clear message at
//! the offending span (snapshots in `tests/ui/par/*.stderr`): control flow that would leave
//! the body, a variable not named in `with (...)`, a missing or unknown reduction, a source
//! that is not a range or a slice, a missing loop type, an option set twice, and bodies or
//! captures whose types do not fit.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/par/*.rs");
}
