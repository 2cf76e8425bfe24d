async fn double(k: u64) -> u64 {
    k * 2
}

async fn run() -> u64 {
    pp::par!(sum for k: u64 in 0..100 { double(k).await })
}

fn main() {
    let _ = run();
}
