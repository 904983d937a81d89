//! Store URLs as they may be logged or shown (invariant 5: nothing secret
//! is logged). A password can sit in a URL's user information
//! (`redis://:pw@host`) or in its query (`redis+unix:///run/redis.sock?pass=pw`,
//! `mysql://u@h/db?password=pw`): both are replaced by `***`.

use crate::store::split_urls;

/// Query parameters whose values are hidden: any whose name contains one
/// of these (`pass`, `password`, `pwd`, `auth_token`, ...).
const SECRET_PARAMS: [&str; 5] = ["pass", "pwd", "secret", "token", "auth"];

/// A store URL with its passwords hidden. Something without a scheme is
/// not a URL the stores take, and is shown as `<url>` rather than risk it.
pub fn url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}", after_scheme(rest)),
        None => "<url>".into(),
    }
}

/// A `--mysql` URL, or list of URLs (a Galera cluster's nodes).
pub fn mysql(urls: &str) -> String {
    let shown: Vec<String> = split_urls(urls).into_iter().map(url).collect();
    shown.join(",")
}

/// A Redis Cluster seed: `HOST:PORT` as it is; a URL, or the scheme-less
/// `:pw@host:port` the server also takes, with its password hidden.
pub fn seed(seed: &str) -> String {
    if seed.contains("://") {
        url(seed)
    } else {
        after_scheme(seed)
    }
}

/// `user:pw@host/path?query` with `pw` and secret query values hidden.
/// The last `@` ends the user information, so a password holding an
/// unescaped `@`, `?` or `/` is hidden whole.
fn after_scheme(rest: &str) -> String {
    let (userinfo, location) = match rest.rsplit_once('@') {
        Some((userinfo, location)) => (Some(userinfo), location),
        None => (None, rest),
    };
    let mut shown = match userinfo {
        Some(info) => match info.split_once(':') {
            Some((user, _)) => format!("{user}:***@"),
            None => format!("{info}@"),
        },
        None => String::new(),
    };
    match location.split_once('?') {
        Some((base, query)) => {
            shown.push_str(base);
            shown.push('?');
            let params: Vec<String> = query.split('&').map(param).collect();
            shown.push_str(&params.join("&"));
        }
        None => shown.push_str(location),
    }
    shown
}

fn param(param: &str) -> String {
    match param.split_once('=') {
        Some((name, _)) if is_secret_param(name) => format!("{name}=***"),
        _ => param.to_owned(),
    }
}

fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_PARAMS.iter().any(|s| name.contains(s))
}

#[cfg(test)]
mod tests {
    use super::{mysql, seed, url};

    #[test]
    fn passwords_in_the_user_information_are_hidden() {
        assert_eq!(
            url("mysql://root:s3cret@db:3306/seckill"),
            "mysql://root:***@db:3306/seckill"
        );
        assert_eq!(
            url("mysql://root@127.0.0.1:3306/seckill"),
            "mysql://root@127.0.0.1:3306/seckill"
        );
        assert_eq!(url("redis://:p@ss@h:6379"), "redis://:***@h:6379");
        assert_eq!(url("redis://:p?s/s@h:6379/0"), "redis://:***@h:6379/0");
        assert_eq!(url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(url("not a url"), "<url>");
        assert_eq!(
            mysql("mysql://u:p@a:1/db,mysql://u:q@b:2/db"),
            "mysql://u:***@a:1/db,mysql://u:***@b:2/db"
        );
    }

    #[test]
    fn passwords_in_the_query_are_hidden() {
        assert_eq!(
            url("redis+unix:///run/redis.sock?db=1&pass=S3"),
            "redis+unix:///run/redis.sock?db=1&pass=***"
        );
        assert_eq!(
            url("mysql://u@h/db?pool_max=4&password=S3"),
            "mysql://u@h/db?pool_max=4&password=***"
        );
        assert_eq!(
            url("rediss://h:6380/?Auth_Token=S3"),
            "rediss://h:6380/?Auth_Token=***"
        );
    }

    #[test]
    fn cluster_seeds_with_or_without_a_scheme() {
        assert_eq!(seed("127.0.0.1:7001"), "127.0.0.1:7001");
        assert_eq!(seed(":pw@h:7001"), ":***@h:7001");
        assert_eq!(seed("user:pw@h:7001"), "user:***@h:7001");
        assert_eq!(seed("redis://:pw@h:7001"), "redis://:***@h:7001");
    }
}
