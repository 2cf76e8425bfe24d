#[pp::parallel]
fn answer() -> u32 {
    42
}

fn main() {
    assert_eq!(answer(), 42);
    let server = pp::Server::builder().ncpus(1).build().unwrap();
    assert_eq!(server.submit(answer, ()).result().unwrap(), 42);
}
