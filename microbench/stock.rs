//! The embedded stock deduction: one `MemoryStock::reserve` of a merged
//! batch of buyers, as a worker makes it, in buyers/s. Each sample starts
//! from a freshly loaded goods, built and dropped outside the timing.
//!
//! `cargo bench --bench stock`. A benchmark links the library like any other
//! crate, so what it uses from `seckill::testing` must stay public.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use seckill::testing::{Buyer, MemoryStock, ReserveRules, StockStore};
use seckill_proto::{DEFAULT_PAY_WINDOW_MS, NO_TOKEN};

const GOODS: u64 = 1;
/// The default rules: one order per user, no token.
const RULES: ReserveRules = ReserveRules {
    per_user_limit: 1,
    token_required: false,
    now_ms: 1_700_000_000_000,
    pay_by_ms: 1_700_000_000_000 + DEFAULT_PAY_WINDOW_MS,
};

fn reserve(c: &mut Criterion) {
    let mut g = c.benchmark_group("memory stock reserve");
    for batch in [1u64, 100, 1000] {
        let buyers: Vec<Buyer> = (0..batch)
            .map(|i| Buyer {
                request_id: None,
                user: 10_000 + i,
                order_no: 1_000_000 + i,
                token: NO_TOKEN,
            })
            .collect();
        g.throughput(Throughput::Elements(batch));
        // Every buyer gets a unit: the path of a sale in full swing.
        g.bench_with_input(BenchmarkId::new("in stock", batch), &buyers, |b, buyers| {
            b.iter_batched_ref(
                || {
                    let stock = MemoryStock::new();
                    stock
                        .load(GOODS, 1_000_000, &[], 1, 1_000_000)
                        .expect("load");
                    stock
                },
                |stock| black_box(stock.reserve(GOODS, &RULES, buyers).map(|r| r.remaining)),
                BatchSize::SmallInput,
            )
        });
        // Half of them already hold an order: retries in a crowd.
        g.bench_with_input(
            BenchmarkId::new("half held", batch),
            &buyers,
            |b, buyers| {
                let held: Vec<(u64, u64)> = buyers
                    .iter()
                    .step_by(2)
                    .map(|b| (b.user, b.order_no))
                    .collect();
                b.iter_batched_ref(
                    || {
                        let stock = MemoryStock::new();
                        stock
                            .load(GOODS, 1_000_000, &held, 1, 2_000_000)
                            .expect("load");
                        stock
                    },
                    |stock| black_box(stock.reserve(GOODS, &RULES, buyers).map(|r| r.remaining)),
                    BatchSize::SmallInput,
                )
            },
        );
        // Nothing left: the sold-out answer.
        g.bench_with_input(BenchmarkId::new("sold out", batch), &buyers, |b, buyers| {
            let stock = MemoryStock::new();
            stock.load(GOODS, 0, &[], 1, 0).expect("load");
            b.iter(|| black_box(stock.reserve(GOODS, &RULES, buyers).map(|r| r.remaining)))
        });
    }
    g.finish();
}

criterion_group!(benches, reserve);
criterion_main!(benches);
