struct NotSerde;

#[pp::parallel]
fn consume(n: u64, x: NotSerde) -> u64 {
    let _ = x;
    n
}

fn main() {}
