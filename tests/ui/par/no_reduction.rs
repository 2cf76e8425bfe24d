fn main() {
    let total = pp::par!(for k: u64 in 0..100 { k * 2 });
    println!("{total:?}");
}
