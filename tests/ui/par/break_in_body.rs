fn main() {
    let total = pp::par!(sum for k: u64 in 0..100 {
        if k == 50 {
            break;
        }
        k
    });
    println!("{total}");
}
