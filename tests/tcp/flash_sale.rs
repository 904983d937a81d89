use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use seckill_client::Purchase;

use crate::harness::{on_sale, stored_orders, Server};

/// 64 client threads, 5000 distinct users, 1000 units: exactly 1000 sold,
/// nobody twice, and the store holds exactly those orders.
#[test]
fn a_flash_crowd_buys_exactly_the_stock() {
    const THREADS: u64 = 64;
    const USERS: u64 = 5000;
    const STOCK: u32 = 1000;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("sale.db"), &[]);
    let goods = server.admin().add_goods(on_sale("phone", STOCK)).unwrap();

    let next_user = Arc::new(AtomicU64::new(1));
    let ordered = Arc::new(Mutex::new(Vec::new()));
    let sold_out = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (next_user, ordered, sold_out) =
                (next_user.clone(), ordered.clone(), sold_out.clone());
            let mut client = server.client();
            std::thread::spawn(move || loop {
                let user = next_user.fetch_add(1, Ordering::Relaxed);
                if user > USERS {
                    return;
                }
                match client.buy(user, goods.id).expect("buy") {
                    Purchase::Ordered(no) => ordered.lock().unwrap().push((no, user)),
                    Purchase::SoldOut => {
                        sold_out.fetch_add(1, Ordering::Relaxed);
                    }
                    other => panic!("user {user}: unexpected {other:?}"),
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }

    let ordered = ordered.lock().unwrap().clone();
    assert_eq!(ordered.len(), STOCK as usize, "ok replies");
    assert_eq!(sold_out.load(Ordering::Relaxed), USERS - u64::from(STOCK));
    let users: HashSet<u64> = ordered.iter().map(|&(_, u)| u).collect();
    assert_eq!(users.len(), ordered.len(), "a user was told ok twice");
    let numbers: HashSet<u64> = ordered.iter().map(|&(n, _)| n).collect();
    assert_eq!(
        numbers.len(),
        ordered.len(),
        "an order number was given twice"
    );

    let mut client = server.client();
    assert_eq!(client.get_goods(goods.id).unwrap().remaining, 0);
    // A late buyer is turned away, and a winner asking again gets their order.
    assert_eq!(client.buy(USERS + 1, goods.id).unwrap(), Purchase::SoldOut);
    let (no, user) = ordered[17];
    assert_eq!(
        client.buy(user, goods.id).unwrap(),
        Purchase::AlreadyBought(no)
    );
    assert_eq!(
        client
            .order_status(user, goods.id)
            .unwrap()
            .unwrap()
            .order_no,
        no
    );
    drop(server);

    // The durable record, read from the data file itself.
    let mut stored: Vec<(u64, u64)> = stored_orders(&dir.path().join("sale.db"))
        .into_iter()
        .map(|(no, user, g)| {
            assert_eq!(g, goods.id);
            (no, user)
        })
        .collect();
    stored.sort_unstable();
    let mut told = ordered;
    told.sort_unstable();
    assert_eq!(
        stored, told,
        "the store must hold exactly the orders told ok"
    );
}
