//! The embedded stock deduction: one `MemoryStock::reserve` of a merged
//! batch of buyers, as a worker makes it, in buyers/s. Each sample starts
//! from a freshly loaded goods, built and dropped outside the timing.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use seckill::store::{MemoryStock, StockStore};

const GOODS: u64 = 1;

fn reserve(c: &mut Criterion) {
    let mut g = c.benchmark_group("memory stock reserve");
    for batch in [1u64, 100, 1000] {
        let buyers: Vec<(u64, u64)> = (0..batch).map(|i| (10_000 + i, 1_000_000 + i)).collect();
        g.throughput(Throughput::Elements(batch));
        // Every buyer gets a unit: the path of a sale in full swing.
        g.bench_with_input(BenchmarkId::new("in stock", batch), &buyers, |b, buyers| {
            b.iter_batched_ref(
                || {
                    let stock = MemoryStock::new();
                    stock.load(GOODS, 1_000_000, &[]).expect("load");
                    stock
                },
                |stock| black_box(stock.reserve(GOODS, buyers).map(|r| r.remaining)),
                BatchSize::SmallInput,
            )
        });
        // Half of them already hold an order: retries in a crowd.
        g.bench_with_input(
            BenchmarkId::new("half held", batch),
            &buyers,
            |b, buyers| {
                let held: Vec<(u64, u64)> = buyers.iter().step_by(2).copied().collect();
                b.iter_batched_ref(
                    || {
                        let stock = MemoryStock::new();
                        stock.load(GOODS, 1_000_000, &held).expect("load");
                        stock
                    },
                    |stock| black_box(stock.reserve(GOODS, buyers).map(|r| r.remaining)),
                    BatchSize::SmallInput,
                )
            },
        );
        // Nothing left: the sold-out answer.
        g.bench_with_input(BenchmarkId::new("sold out", batch), &buyers, |b, buyers| {
            let stock = MemoryStock::new();
            stock.load(GOODS, 0, &[]).expect("load");
            b.iter(|| black_box(stock.reserve(GOODS, buyers).map(|r| r.remaining)))
        });
    }
    g.finish();
}

criterion_group!(benches, reserve);
criterion_main!(benches);
