fn main() {
    let n = pp::par!(count for k: u64 in 0..100 { k % 3 });
    println!("{n}");
}
