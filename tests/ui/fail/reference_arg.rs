#[pp::parallel]
fn count(x: &str) -> usize {
    x.len()
}

fn main() {}
