use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use seckill_client::Purchase;

use crate::harness::{on_sale, stored_orders, Server};

/// Buys with `threads` clients, one new user per attempt, until the server
/// goes away or the goods sells out. Returns every order told "ok".
pub fn buy_until_gone(
    server: &Server,
    goods: u64,
    threads: usize,
    next_user: &Arc<AtomicU64>,
    told: &Arc<Mutex<HashMap<u64, u64>>>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..threads)
        .map(|_| {
            let (next_user, told) = (next_user.clone(), told.clone());
            let mut client = server.client();
            std::thread::spawn(move || loop {
                let user = next_user.fetch_add(1, Ordering::Relaxed);
                match client.buy(user, goods) {
                    Ok(Purchase::Ordered(no)) => {
                        told.lock().unwrap().insert(user, no);
                    }
                    Ok(Purchase::SoldOut) => return,
                    Ok(other) => panic!("user {user}: unexpected {other:?}"),
                    // The server was killed: this BUY's outcome is unknown to
                    // the client, which is allowed; it was not told "ok".
                    Err(_) => return,
                }
            })
        })
        .collect()
}

/// SIGKILL the server in the middle of a sale, twice, restarting it on the
/// same data file each time: every order a client was told "ok" is stored,
/// and the restarted server's remaining stock is total − orders. The sale
/// then sells out to exactly its stock.
#[test]
fn sigkill_mid_sale_loses_no_acknowledged_order() {
    const STOCK: u32 = 3000;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("crash.db");
    let mut server = Server::start(&data, &[]);
    let goods = server.admin().add_goods(on_sale("tv", STOCK)).unwrap().id;
    let next_user = Arc::new(AtomicU64::new(1));
    let told = Arc::new(Mutex::new(HashMap::new()));

    for round in 1..=2 {
        let threads = buy_until_gone(&server, goods, 16, &next_user, &told);
        // Let the sale get going, then kill it mid-flight.
        let deadline = Instant::now() + Duration::from_secs(30);
        while told.lock().unwrap().len() < 500 * round {
            assert!(Instant::now() < deadline, "sale made no progress");
            std::thread::sleep(Duration::from_millis(1));
        }
        server.kill();
        for t in threads {
            t.join().unwrap();
        }

        let stored: HashMap<u64, u64> = stored_orders(&data)
            .into_iter()
            .map(|(no, user, g)| {
                assert_eq!(g, goods);
                (user, no)
            })
            .collect();
        for (user, no) in told.lock().unwrap().iter() {
            assert_eq!(
                stored.get(user),
                Some(no),
                "acknowledged order of user {user} lost"
            );
        }
        assert!(stored.len() <= STOCK as usize);

        server = Server::start(&data, &[]);
        let remaining = server.client().get_goods(goods).unwrap().remaining;
        assert_eq!(
            remaining as usize,
            STOCK as usize - stored.len(),
            "round {round}"
        );
    }

    // Sell the rest: the sale ends at exactly its stock.
    let threads = buy_until_gone(&server, goods, 16, &next_user, &told);
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(server.client().get_goods(goods).unwrap().remaining, 0);
    drop(server);
    let stored = stored_orders(&data);
    assert_eq!(stored.len(), STOCK as usize, "sold exactly the stock");
    let mut users: Vec<u64> = stored.iter().map(|&(_, u, _)| u).collect();
    users.sort_unstable();
    users.dedup();
    assert_eq!(users.len(), STOCK as usize, "no user twice");
}
