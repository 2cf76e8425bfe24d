fn main() {
    let total = pp::par!(average for k: u64 in 0..100 { k as f64 });
    println!("{total}");
}
