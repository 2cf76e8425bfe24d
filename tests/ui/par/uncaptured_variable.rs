fn main() {
    let target = 42u64;
    let hits = pp::par!(count for k: u64 in 0..100 { k % 10 == target % 10 });
    println!("{hits}");
}
