struct NotSerde;

#[pp::parallel]
fn produce(n: u64) -> NotSerde {
    let _ = n;
    NotSerde
}

fn main() {}
