#[pp::parallel]
fn fib(n: u64) -> u64 {
    if n < 2 {
        n
    } else {
        fib(n - 1) + fib(n - 2)
    }
}

fn main() {
    assert_eq!(fib(20), 6765);
    let server = pp::Server::builder().ncpus(1).build().unwrap();
    assert_eq!(server.submit(fib, (20,)).result().unwrap(), 6765);
}
