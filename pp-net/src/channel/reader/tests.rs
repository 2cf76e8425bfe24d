//! The reader with a plaintext area plugged in (the node's shared argument area): large
//! messages land in it while it is free, on the heap otherwise.

use super::*;
use crate::area::SharedArea;
use crate::channel::SharedBytes;
use crate::{JobRequest, Message};

fn submit(job_id: u64, len: usize) -> Message {
    Message::Submit {
        jobs: vec![JobRequest {
            job_id,
            task: "t".into(),
            fingerprint: 0,
            timeout: None,
            args: (0..len).map(|i| (i % 253) as u8 ^ job_id as u8).collect(),
        }],
    }
}

/// The arguments of the one job of a large `Submit`, kept as a node keeps them.
fn kept_args(plain: &Plaintext<'_>) -> SharedBytes {
    let jobs = crate::protocol::decode_submit(plain.bytes(), u64::MAX)
        .unwrap()
        .expect("a Submit");
    plain.keep(jobs[0].args)
}

#[tokio::test]
async fn large_messages_land_in_the_shared_area_while_it_is_free_and_on_the_heap_otherwise() {
    let ((_, mut to_node), (mut from_client, _)) = crate::test_channel::connected().await;
    let (area, _worker_fd) = SharedArea::create(8 << 20).unwrap();
    from_client.set_plaintext_area(area);

    let expected = |message: &Message| match message {
        Message::Submit { jobs } => jobs[0].args.clone(),
        _ => unreachable!(),
    };
    let (first, second, third) = (submit(1, 3 << 20), submit(2, 2 << 20), submit(3, 100));
    let messages = [first.clone(), second.clone(), third, first.clone()];
    // Sent by a task of its own: the socket holds far less than these messages.
    let sending = tokio::spawn(async move {
        for message in &messages {
            to_node.send(message).await.unwrap();
        }
        to_node
    });

    // The first large message goes to the area, and its arguments are there.
    let held = kept_args(&from_client.recv_plaintext().await.unwrap());
    assert!(held.area_range().is_some(), "in the area");
    assert_eq!(&*held, &expected(&first)[..]);
    // The area is still held: the next large message goes to the heap.
    let other = kept_args(&from_client.recv_plaintext().await.unwrap());
    assert_eq!(other.area_range(), None);
    assert_eq!(&*other, &expected(&second)[..]);
    // A small message never uses the area.
    let small = kept_args(&from_client.recv_plaintext().await.unwrap());
    assert_eq!(small.area_range(), None);
    // Once the first one's job is done, the area serves again, with the right bytes.
    drop(held);
    let again = kept_args(&from_client.recv_plaintext().await.unwrap());
    assert!(again.area_range().is_some(), "the area came back");
    assert_eq!(&*again, &expected(&first)[..]);
    assert_eq!(
        &*other,
        &expected(&second)[..],
        "the heap message untouched"
    );
    drop(sending.await.unwrap());
}
