//! What a MySQL error means: whether the link broke, whether the failure
//! may pass, whether the server picked the transaction as a deadlock
//! victim, and whether the node is no place to write (a Galera node out of
//! its cluster).

use ::mysql::{DriverError, Error};

use crate::store::StoreError;

/// Server errors that may pass (the request is answered `busy`); any other
/// server error is a bug or a damaged database. By code: too many
/// connections (1040, 1203, 1226), shutdown in progress (1053), out of
/// memory or resources (1037, 1038, 1041), storage engine errors and a full
/// disk or table (1021, 1030, 1114), connection aborted or killed (1152,
/// 1158-1161, 1927), error during commit or rollback (1180, 1181), lock wait
/// timeout (1205), deadlock (1213), read-only server (1290, 1836),
/// interrupted or timed out statement (1317, 1969, 3024), too many
/// transactions (1637), unknown or inaccessible database (1044, 1045, 1049),
/// closed for inactivity (4031), a Galera node not ready for queries
/// (1047, see [`NOT_READY`]).
const PASSING_SERVER_ERRORS: &[u16] = &[
    1021, 1030, 1037, 1038, 1040, 1041, 1044, 1045, 1047, 1049, 1053, 1114, 1152, 1158, 1159, 1160,
    1161, 1180, 1181, 1203, 1205, 1213, 1226, 1290, 1317, 1637, 1836, 1927, 1969, 3024, 4031,
];

/// Server errors that end the connection: shutdown in progress (1053),
/// connection aborted (1152), killed (1927), closed for inactivity (4031).
const CONNECTION_ENDED: &[u16] = &[1053, 1152, 1927, 4031];

/// "Deadlock found when trying to get lock": the transaction was rolled back.
/// Galera reports a transaction that failed certification (it conflicted
/// with one committed through another node) or was aborted by a replicated
/// one the same way, and it was rolled back just the same.
pub(super) const DEADLOCK: u16 = 1213;

/// "Duplicate entry for key": a row hit a unique key. InnoDB undid the
/// statement (every row of a multi-row INSERT), not the transaction.
pub(super) const DUPLICATE_KEY: u16 = 1062;

/// A `LOAD DATA LOCAL INFILE` the server refuses, its `local_infile` off:
/// MariaDB's 4166, MySQL 8's 3948, and 1148 of older servers of both.
pub(super) const LOAD_REFUSED: [u16; 3] = [4166, 3948, 1148];

/// "WSREP has not yet prepared node for application use": a Galera node that
/// is joining, or cut off from the primary component, refuses every query
/// with this (ER_UNKNOWN_COM_ERROR). Nothing was done; the node is no place
/// to write until it is Synced again.
pub(super) const NOT_READY: u16 = 1047;

/// Whether the link itself failed: the connection is gone, or may be out of
/// step with the server, and must not be used again.
pub(super) fn broken(e: &Error) -> bool {
    match e {
        Error::IoError(_) | Error::CodecError(_) => true,
        Error::DriverError(d) => matches!(
            d,
            DriverError::PacketOutOfSync
                | DriverError::UnexpectedPacket
                | DriverError::PacketTooLarge
        ),
        Error::MySqlError(e) => CONNECTION_ENDED.contains(&e.code),
        _ => false,
    }
}

/// Whether the node can take no more of this link's calls: the link broke,
/// or the node says it is not ready (a Galera node out of its cluster). A
/// store with several nodes chooses its writer again.
pub(super) fn node_failed(e: &Error) -> bool {
    broken(e) || matches!(e, Error::MySqlError(e) if e.code == NOT_READY)
}

/// "Impossible to write to binary log since BINLOG_FORMAT = STATEMENT":
/// InnoDB refuses a write at READ COMMITTED where the server logs
/// statements. The statement did nothing.
pub(super) const STATEMENT_BINLOG: u16 = 1665;

/// Whether the server refused a write at READ COMMITTED for its binary log
/// ([`STATEMENT_BINLOG`]).
pub(super) fn statement_binlog(e: &Error) -> bool {
    matches!(e, Error::MySqlError(e) if e.code == STATEMENT_BINLOG)
}

/// Whether the server rolled the transaction back to break a deadlock.
pub(super) fn deadlocked(e: &Error) -> bool {
    matches!(e, Error::MySqlError(e) if e.code == DEADLOCK)
}

/// What a MySQL error means to the sale: the store is unavailable (the
/// link, the server's health, a lock conflict) or something is wrong with
/// the data or the code (a constraint, a value that does not convert).
pub(super) fn store_error(what: &str, e: &Error) -> StoreError {
    let passing = match e {
        Error::MySqlError(e) => PASSING_SERVER_ERRORS.contains(&e.code),
        Error::FromValueError(_) | Error::FromRowError(_) => false,
        Error::DriverError(
            DriverError::MismatchedStmtParams(..)
            | DriverError::Params(_)
            | DriverError::MixedParams,
        ) => false,
        _ => true,
    };
    if passing {
        StoreError::Unavailable(format!("mysql {what}: {e}"))
    } else {
        StoreError::Inconsistent(format!("mysql {what}: {e}"))
    }
}

/// A server error with this code, as the driver reports one.
#[cfg(test)]
pub(super) fn server_error(code: u16) -> Error {
    Error::MySqlError(::mysql::MySqlError {
        state: "HY000".into(),
        message: format!("test error {code}"),
        code,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classed_by_what_they_mean_to_the_sale() {
        let io = || Error::IoError(std::io::ErrorKind::ConnectionReset.into());
        assert!(broken(&io()) && broken(&server_error(1927)));
        assert!(!broken(&server_error(DEADLOCK)) && !broken(&server_error(1062)));
        assert!(deadlocked(&server_error(DEADLOCK)) && !deadlocked(&io()));
        assert!(statement_binlog(&server_error(1665)) && !statement_binlog(&io()));
        // A Galera node out of its cluster: the link is fine, the node is not.
        assert!(!broken(&server_error(NOT_READY)) && node_failed(&server_error(NOT_READY)));
        assert!(node_failed(&io()) && !node_failed(&server_error(DEADLOCK)));
        for passing in [
            io(),
            server_error(DEADLOCK),
            server_error(1205),
            server_error(NOT_READY),
        ] {
            let e = store_error("x", &passing);
            assert!(matches!(e, StoreError::Unavailable(_)), "{passing}: {e}");
        }
        // A duplicate key, a foreign key, a bad parameter list: bugs or a
        // damaged database, never "retry later".
        let params = Error::DriverError(DriverError::MixedParams);
        for broken_data in [server_error(1062), server_error(1452), params] {
            let e = store_error("x", &broken_data);
            assert!(
                matches!(e, StoreError::Inconsistent(_)),
                "{broken_data}: {e}"
            );
        }
    }
}
