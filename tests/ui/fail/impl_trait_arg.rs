#[pp::parallel]
fn widen(x: impl Into<u64>) -> u64 {
    x.into()
}

fn main() {}
