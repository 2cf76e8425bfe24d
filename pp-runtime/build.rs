//! Passes the target triple this crate is built for to the code (`PP_TARGET`), so that a
//! node can say exactly which builds it runs (`Platform::this`) and a client can print the
//! `cargo build --target ...` command that makes one.

fn main() {
    // Cargo always sets TARGET for build scripts; "unknown" only if run by hand.
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=PP_TARGET={target}");
    println!("cargo:rerun-if-changed=build.rs");
}
