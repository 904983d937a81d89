//! Frame encode and decode, in frames/s: the codec cost every request pays
//! on both sides.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use seckill_proto::{
    Frame, Goods, GoodsState, Opcode, Reply, Request, SaleRules, MAX_REPLY_FRAME,
    MAX_REQUEST_FRAME, NO_TOKEN,
};

/// Frames per iteration: one pipelined burst.
const FRAMES: u64 = 1000;

fn buys() -> BytesMut {
    let mut buf = BytesMut::with_capacity(FRAMES as usize * 32);
    for i in 0..FRAMES {
        Request::Buy {
            user_id: 1_000_000 + i,
            goods_id: 7,
            token: NO_TOKEN,
            request_id: None,
        }
        .encode(i, &mut buf);
    }
    buf
}

fn replies() -> BytesMut {
    let mut buf = BytesMut::new();
    for i in 0..FRAMES {
        let reply = match i % 3 {
            0 => Reply::Bought {
                order_no: u64::MAX - i,
            },
            1 => Reply::AlreadyBought { order_no: i },
            _ => Reply::error(seckill_proto::Status::SoldOut, "sold out"),
        };
        reply.encode(Opcode::Buy as u8, i, &mut buf);
    }
    buf
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(FRAMES));
    g.bench_function("buy request", |b| {
        let mut buf = BytesMut::with_capacity(FRAMES as usize * 32);
        b.iter(|| {
            buf.clear();
            for i in 0..FRAMES {
                Request::Buy {
                    user_id: black_box(i),
                    goods_id: 7,
                    token: NO_TOKEN,
                    request_id: None,
                }
                .encode(i, &mut buf);
            }
            black_box(buf.len())
        })
    });
    g.bench_function("bought reply", |b| {
        let mut buf = BytesMut::with_capacity(FRAMES as usize * 32);
        b.iter(|| {
            buf.clear();
            for i in 0..FRAMES {
                Reply::Bought {
                    order_no: black_box(i),
                }
                .encode(Opcode::Buy as u8, i, &mut buf);
            }
            black_box(buf.len())
        })
    });
    let goods = Goods {
        id: 1,
        name: "Phone X".into(),
        price_cents: 99_900,
        total: 1000,
        remaining: 42,
        start_ms: 1_700_000_000_000,
        end_ms: 1_700_003_600_000,
        state: GoodsState::OnSale,
        rules: SaleRules::default(),
    };
    g.bench_function("goods reply", |b| {
        let reply = Reply::Goods(goods.clone());
        let mut buf = BytesMut::with_capacity(FRAMES as usize * 64);
        b.iter(|| {
            buf.clear();
            for i in 0..FRAMES {
                reply.encode(Opcode::GetGoods as u8, i, &mut buf);
            }
            black_box(buf.len())
        })
    });
    g.finish();
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(FRAMES));
    let requests = buys();
    g.bench_function("buy request", |b| {
        b.iter(|| {
            let mut at = 0;
            while let Ok((frame, used)) = Frame::parse(&requests[at..], MAX_REQUEST_FRAME) {
                black_box(Request::decode(&frame).ok());
                at += used;
            }
            at
        })
    });
    let replies = replies();
    g.bench_function("buy reply", |b| {
        b.iter(|| {
            let mut at = 0;
            while let Ok((frame, used)) = Frame::parse(&replies[at..], MAX_REPLY_FRAME) {
                black_box(Reply::decode(&frame).ok());
                at += used;
            }
            at
        })
    });
    g.bench_function("frame boundaries only", |b| {
        b.iter_batched(
            || requests.clone(),
            |buf| {
                let mut at = 0;
                while let Ok((frame, used)) = Frame::parse(&buf[at..], MAX_REQUEST_FRAME) {
                    black_box(frame.id);
                    at += used;
                }
                at
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, encode, decode);
criterion_main!(benches);
