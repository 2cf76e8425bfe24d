mod math {
    pub mod powers {
        #[pp::parallel]
        pub fn cube(x: u64) -> u64 {
            x * x * x
        }
    }
}

mod caller {
    use crate::math::powers::cube;

    pub fn run() {
        assert_eq!(cube(3), 27);
        // The id is the module path where the function is defined, not where it is used.
        assert!(cube.id().ends_with("::math::powers::cube"), "{}", cube.id());
        let server = pp::Server::builder().ncpus(1).build().unwrap();
        assert_eq!(server.submit(cube, (3,)).result().unwrap(), 27);
    }
}

fn main() {
    assert_eq!(math::powers::cube(2), 8);
    let server = pp::Server::builder().ncpus(1).build().unwrap();
    assert_eq!(
        server.submit(math::powers::cube, (4,)).result().unwrap(),
        64
    );
    caller::run();
}
