//! Codec micro-benchmarks: decoding what clients send, encoding what the
//! server sends.

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use stomp::{Command, Decoder, Frame, Item, Version};

/// A SEND as stompjs writes it: a few headers and a short chat line.
fn stompjs_send() -> Bytes {
    Frame::new(Command::Send)
        .with_header("destination", "/topic/chat.room42")
        .with_header("content-type", "application/json")
        .with_header("receipt", "receipt-17")
        .with_body(&br#"{"user":"alice","text":"hello everyone, how is it going?"}"#[..])
        .to_bytes(Version::V1_2)
}

fn decode(c: &mut Criterion) {
    let one = stompjs_send();
    let mut batch = BytesMut::new();
    for _ in 0..100 {
        batch.extend_from_slice(&one);
        batch.extend_from_slice(b"\n");
    }
    let batch = batch.freeze();
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(100));
    group.bench_function("send_frames_x100", |b| {
        b.iter_batched(
            || BytesMut::from(&batch[..]),
            |mut buf| {
                let mut decoder = Decoder::default();
                let mut frames = 0;
                while let Some(item) = decoder.decode(&mut buf).unwrap() {
                    if matches!(item, Item::Frame(_)) {
                        frames += 1;
                    }
                }
                assert_eq!(frames, 100);
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn encode(c: &mut Criterion) {
    let frame = Frame::new(Command::Message)
        .with_header("destination", "/topic/chat.room42")
        .with_header("message-id", "node1-123456")
        .with_header("subscription", "sub-0")
        .with_header("content-type", "application/json")
        .with_body(&br#"{"user":"alice","text":"hello everyone, how is it going?"}"#[..]);
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(1));
    group.bench_function("message_frame", |b| {
        let mut buf = BytesMut::with_capacity(4096);
        b.iter(|| {
            buf.clear();
            frame.encode(Version::V1_2, &mut buf);
            criterion::black_box(&buf);
        })
    });
    group.finish();
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);
