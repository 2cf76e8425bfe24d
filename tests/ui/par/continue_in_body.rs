fn main() {
    let total = pp::par!(sum for k: u64 in 0..100 {
        if k % 2 == 0 {
            continue;
        }
        k
    });
    println!("{total}");
}
