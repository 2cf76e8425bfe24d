#[pp::parallel]
fn weigh((a, b): (u32, u32), mut x: u64) -> u64 {
    x *= 2;
    x + u64::from(a) * u64::from(b)
}

fn main() {
    assert_eq!(weigh((3, 4), 5), 22);
    let server = pp::Server::builder().ncpus(1).build().unwrap();
    assert_eq!(server.submit(weigh, ((3, 4), 5)).result().unwrap(), 22);
}
