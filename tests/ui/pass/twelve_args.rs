#[pp::parallel]
#[allow(clippy::too_many_arguments)]
fn sum12(
    a1: u8,
    a2: u16,
    a3: u32,
    a4: u64,
    a5: i8,
    a6: i16,
    a7: i32,
    a8: i64,
    a9: String,
    a10: Vec<u8>,
    a11: (u8, u8),
    a12: Option<u64>,
) -> i64 {
    i64::from(a1)
        + i64::from(a2)
        + i64::from(a3)
        + a4 as i64
        + i64::from(a5)
        + i64::from(a6)
        + i64::from(a7)
        + a8
        + a9.len() as i64
        + a10.len() as i64
        + i64::from(a11.0)
        + i64::from(a11.1)
        + a12.unwrap_or(0) as i64
}

fn main() {
    let direct = sum12(
        1,
        2,
        3,
        4,
        5,
        6,
        7,
        8,
        "ab".to_owned(),
        vec![0; 3],
        (1, 1),
        Some(10),
    );
    assert_eq!(direct, 53);
    let server = pp::Server::builder().ncpus(1).build().unwrap();
    let job = server.submit(
        sum12,
        (
            1,
            2,
            3,
            4,
            5,
            6,
            7,
            8,
            "ab".to_owned(),
            vec![0; 3],
            (1, 1),
            Some(10),
        ),
    );
    assert_eq!(job.result().unwrap(), 53);
}
