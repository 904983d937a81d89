use seckill_client::Client;

use crate::harness::{on_sale, Server, TOKEN};

use std::time::Duration;

#[test]
fn admin_commands_need_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("a.db"), &[]);
    let goods = server.admin().add_goods(on_sale("lamp", 5)).unwrap();

    let mut plain = server.client();
    assert!(!plain.is_admin());
    assert!(plain
        .add_goods(on_sale("free lamp", 5))
        .unwrap_err()
        .is_unauthorized());
    assert!(plain.restock(goods.id, 100).unwrap_err().is_unauthorized());
    assert!(plain.stats().unwrap_err().is_unauthorized());
    // The connection is still good for what a buyer may do.
    plain.ping().unwrap();

    let wrong = Client::builder(server.addr)
        .token("not-the-token")
        .connect();
    assert!(
        wrong.unwrap_err().is_unauthorized(),
        "a wrong token is refused at HELLO"
    );
    let almost = Client::builder(server.addr)
        .token(&TOKEN[..TOKEN.len() - 1])
        .connect();
    assert!(almost.unwrap_err().is_unauthorized());

    // Nothing the refused commands asked for happened.
    let mut admin = server.admin();
    assert!(admin.is_admin());
    let list = admin.list_goods().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].total, 5);
    assert!(!admin.stats().unwrap().is_empty());
}

/// Nothing secret is logged, even at the most verbose level: not the token
/// given to the server, not a token a client tried.
#[test]
fn the_admin_token_is_never_logged() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_logging(&dir.path().join("log.db"), &[], "trace");
    let mut admin = server.admin();
    let goods = admin.add_goods(on_sale("vase", 3)).unwrap().id;
    admin.restock(goods, 2).unwrap();
    admin.stats().unwrap();
    let guess = "guessed-token-4d2f";
    assert!(Client::builder(server.addr).token(guess).connect().is_err());
    server.client().buy(1, goods).unwrap();
    // The log is read as it comes: let the last lines arrive.
    std::thread::sleep(Duration::from_millis(300));
    let log = server.log();
    assert!(log.contains("listening"), "the log was captured: {log}");
    assert!(!log.contains(TOKEN), "the admin token is in the log");
    assert!(!log.contains(guess), "a client's token is in the log");
}
