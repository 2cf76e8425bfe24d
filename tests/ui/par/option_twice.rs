fn main() {
    let total = pp::par!(chunks = 4, chunks = 8, sum for k: u64 in 0..100 { k });
    println!("{total}");
}
