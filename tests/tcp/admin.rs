use seckill_client::Client;

use crate::harness::{on_sale, Server, TOKEN};

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
