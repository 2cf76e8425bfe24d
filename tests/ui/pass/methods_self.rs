use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Vector {
    x: i64,
    y: i64,
}

#[pp::parallel]
impl Vector {
    fn new(x: i64, y: i64) -> Self {
        Vector { x, y }
    }

    fn plus(&self, other: Self) -> Self {
        Vector::new(self.x + other.x, self.y + other.y)
    }

    fn scaled(self, k: i64) -> (Self, i64) {
        (Vector::new(self.x * k, self.y * k), k)
    }
}

fn main() {
    let a = Vector::new(1, 2);
    let b = Vector::new(10, 20);
    assert_eq!(a.plus(b.clone()), Vector::new(11, 22));
    assert_eq!(a.clone().scaled(3), (Vector::new(3, 6), 3));
    assert_eq!((Vector::PLUS)(a.clone(), b.clone()), Vector::new(11, 22));

    let server = pp::Server::builder().ncpus(1).build().unwrap();
    let plus = server.submit(Vector::PLUS, (a.clone(), b));
    assert_eq!(plus.result().unwrap(), Vector::new(11, 22));
    let scaled = server.submit(Vector::SCALED, (a, 3));
    assert_eq!(scaled.result().unwrap(), (Vector::new(3, 6), 3));
}
