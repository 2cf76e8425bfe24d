fn main() {
    let total = pp::par!(sum for k in 0..100u64 { k });
    println!("{total}");
}
