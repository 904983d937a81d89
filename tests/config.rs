//! Loading the server's configuration: the layers (command line,
//! `SECKILL_*` environment, `--config` file, defaults), the file's errors,
//! the secrets' files, and what the effective configuration shows.
//!
//! A test binary of its own, because these tests set and clear `SECKILL_*`
//! variables of the process: every test here holds one lock while it does
//! and while it loads, so that no thread reads the environment as another
//! changes it.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use seckill::{Config, ConfigError, Loaded, Secret};

/// Takes the environment for this test, with none of the `SECKILL_*`
/// variables set (a developer may have exported SECKILL_ADMIN_TOKEN for
/// seckill-cli).
fn clean_env() -> MutexGuard<'static, ()> {
    static ENV: Mutex<()> = Mutex::new(());
    let guard = ENV.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SECKILL_") {
            std::env::remove_var(name);
        }
    }
    guard
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a test file");
    path.to_str().expect("a UTF-8 temp path").to_owned()
}

fn load(args: &[&str]) -> Result<Loaded, ConfigError> {
    Config::load_from(std::iter::once("seckill-server").chain(args.iter().copied()))
}

#[test]
fn command_line_beats_env_beats_file_beats_default() {
    let _env = clean_env();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(
        dir.path(),
        "seckill.toml",
        "backlog = 100\nworkers = 3\nmax-inflight = 7\nframe-timeout = \"3s\"\nbuy-rate = 2.5\n",
    );
    std::env::set_var("SECKILL_WORKERS", "5");
    std::env::set_var("SECKILL_MAX_INFLIGHT", "8");
    let loaded = load(&["--config", &file, "--max-inflight", "9"]);
    std::env::remove_var("SECKILL_WORKERS");
    std::env::remove_var("SECKILL_MAX_INFLIGHT");
    let Loaded { config, effective } = loaded.expect("load");
    assert_eq!(config.max_inflight, 9, "the command line beats the rest");
    assert_eq!(config.workers, 5, "the environment beats the file");
    assert_eq!(config.backlog, 100, "the file beats the default");
    assert_eq!(config.frame_timeout, Duration::from_secs(3));
    assert_eq!(config.buy_rate, 2.5);
    assert_eq!(config.buy_burst, 20, "the default, when no one says");
    let shown = effective.to_string();
    for part in [
        "max-inflight=9 (command line)",
        "workers=5 (env)",
        "backlog=100 (file)",
        "buy-burst=20",
        &format!("config={file}"),
    ] {
        assert!(shown.contains(part), "{part:?} not in {shown}");
    }
    assert!(
        !shown.contains("buy-burst=20 ("),
        "a default has no source: {shown}"
    );
}

#[test]
fn the_config_file_may_be_named_by_the_environment() {
    let _env = clean_env();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(dir.path(), "s.toml", "listen = \"127.0.0.1:7799\"\n");
    std::env::set_var("SECKILL_CONFIG", &file);
    let loaded = load(&[]);
    std::env::remove_var("SECKILL_CONFIG");
    assert_eq!(
        loaded.expect("load").config.listen,
        "127.0.0.1:7799".parse().expect("an address")
    );
}

#[test]
fn an_unknown_key_is_an_error_naming_it_and_the_file() {
    let _env = clean_env();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(dir.path(), "s.toml", "backlog = 10\nredis_wait = 1\n");
    let err = load(&["--config", &file]).expect_err("an unknown key");
    assert!(matches!(err, ConfigError::UnknownKey { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&file), "{message}");
    assert!(message.contains("`redis_wait`"), "{message}");
    assert!(message.contains("did you mean `redis-wait`"), "{message}");
    // A file cannot name another file, nor ask for help.
    for key in ["config = \"x.toml\"", "help = true", "no-such-flag = 1"] {
        let file = write(dir.path(), "k.toml", key);
        let err = load(&["--config", &file]).expect_err(key);
        assert!(
            matches!(err, ConfigError::UnknownKey { .. }),
            "{key}: {err:?}"
        );
    }
}

#[test]
fn a_bad_value_is_an_error_naming_its_key_and_the_file() {
    let _env = clean_env();
    let dir = tempfile::tempdir().expect("tempdir");
    for (text, key) in [
        ("backlog = \"many\"", "backlog"),
        ("backlog = -1", "backlog"),
        ("frame-timeout = \"soon\"", "frame-timeout"),
        ("ack = \"maybe\"", "ack"),
        ("listen = [\"127.0.0.1:1\"]", "listen"),
        ("acceptors = 99", "acceptors"),
        ("workers = { n = 1 }", "workers"),
        ("listen = 1979-05-27", "listen"),
    ] {
        let file = write(dir.path(), "bad.toml", text);
        let err = load(&["--config", &file]).expect_err(text);
        let ConfigError::BadValue { key: named, .. } = &err else {
            panic!("{text}: {err:?}");
        };
        assert_eq!(named, key);
        let message = err.to_string();
        assert!(
            message.contains(&file) && message.contains(key),
            "{message}"
        );
    }
}

#[test]
fn a_file_that_is_not_toml_or_not_there_is_an_error_naming_it() {
    let _env = clean_env();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(dir.path(), "s.toml", "backlog = \n");
    let err = load(&["--config", &file]).expect_err("bad TOML");
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err:?}");
    assert!(err.to_string().contains(&file), "{err}");
    let missing = dir.path().join("missing.toml");
    let missing = missing.to_str().expect("UTF-8");
    let err = load(&["--config", missing]).expect_err("no file");
    assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains(missing), "{err}");
}

#[test]
fn a_list_in_the_file_is_a_comma_separated_flag() {
    let _env = clean_env();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(
        dir.path(),
        "s.toml",
        "redis-cluster = [\"127.0.0.1:7001\", \"127.0.0.1:7002\"]\n",
    );
    let config = load(&["--config", &file]).expect("load").config;
    let seeds: Option<Vec<&str>> = config
        .redis_cluster
        .as_ref()
        .map(|seeds| seeds.iter().map(|s| &**s).collect());
    assert_eq!(seeds, Some(vec!["127.0.0.1:7001", "127.0.0.1:7002"]));
}

#[test]
fn a_stock_store_on_the_command_line_or_in_the_environment_replaces_the_file_s() {
    let _env = clean_env();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(dir.path(), "s.toml", "redis-cluster = \"127.0.0.1:7001\"\n");
    let config = load(&["--config", &file, "--redis", "redis://127.0.0.1"])
        .expect("the command line wins")
        .config;
    assert_eq!(config.redis.as_deref(), Some("redis://127.0.0.1"));
    assert_eq!(config.redis_cluster, None);
    config.check().expect("one stock store");

    let file = write(dir.path(), "r.toml", "redis = \"redis://127.0.0.1\"\n");
    std::env::set_var("SECKILL_REDIS_CLUSTER", "127.0.0.1:7001,127.0.0.1:7002");
    let loaded = load(&["--config", &file]);
    std::env::remove_var("SECKILL_REDIS_CLUSTER");
    let config = loaded.expect("the environment wins").config;
    assert_eq!(config.redis, None);
    assert_eq!(config.redis_cluster.map(|s| s.len()), Some(2));
}

#[test]
fn a_refused_secret_is_never_shown() {
    let _env = clean_env();
    let dir = tempfile::tempdir().expect("tempdir");
    let token = format!("sekrit-{}", "x".repeat(seckill_proto::MAX_TOKEN_LEN));
    let shows = |err: &ConfigError| {
        let (shown, debug) = (err.to_string(), format!("{err:?}"));
        assert!(
            !shown.contains("sekrit") && !debug.contains("sekrit"),
            "{shown} / {debug}"
        );
        assert!(shown.contains("admin-token"), "names the flag: {shown}");
    };
    // Too long, from each layer.
    shows(&load(&["--admin-token", &token]).expect_err("command line"));
    std::env::set_var("SECKILL_ADMIN_TOKEN", &token);
    let from_env = load(&[]);
    std::env::remove_var("SECKILL_ADMIN_TOKEN");
    shows(&from_env.expect_err("environment"));
    let file = write(
        dir.path(),
        "t.toml",
        &format!("admin-token = \"{token}\"\n"),
    );
    shows(&load(&["--config", &file]).expect_err("file"));
    // A line that is not TOML: toml's own message quotes it.
    let file = write(
        dir.path(),
        "u.toml",
        "workers = 2\nadmin-token = sekrit-unquoted\n",
    );
    let err = load(&["--config", &file]).expect_err("not TOML");
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err:?}");
    let shown = err.to_string();
    assert!(!shown.contains("sekrit"), "{shown}");
    assert!(shown.contains("line 2"), "says where: {shown}");
}

#[test]
fn the_admin_token_comes_from_its_file_without_its_newline_and_is_never_shown() {
    let _env = clean_env();
    let dir = tempfile::tempdir().expect("tempdir");
    let token = write(dir.path(), "token", "s3cret-token\n");
    let Loaded { config, effective } =
        load(&["--admin-token-file", &token]).expect("load with a token file");
    assert_eq!(
        config.admin_token.as_ref().map(Secret::expose),
        Some("s3cret-token")
    );
    let shown = effective.to_string();
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(
        shown.contains(&format!(
            "admin-token=<redacted> (--admin-token-file {token})"
        )),
        "{shown}"
    );
    // From the config file too, CRLF and all.
    let crlf = write(dir.path(), "token2", "other-token\r\n");
    let file = write(
        dir.path(),
        "s.toml",
        &format!("admin-token-file = \"{crlf}\"\n"),
    );
    let config = load(&["--config", &file]).expect("load").config;
    assert_eq!(
        config.admin_token.as_ref().map(Secret::expose),
        Some("other-token")
    );
}

#[test]
fn a_secret_and_its_file_follow_the_precedence() {
    let _env = clean_env();
    let dir = tempfile::tempdir().expect("tempdir");
    let token = write(dir.path(), "token", "from-the-file");
    let file = write(
        dir.path(),
        "s.toml",
        &format!("admin-token-file = \"{token}\"\n"),
    );
    // The environment beats the config file's token file.
    std::env::set_var("SECKILL_ADMIN_TOKEN", "from-the-env");
    let from_env = load(&["--config", &file]);
    // The command line's token file beats the environment.
    let from_cli = load(&["--admin-token-file", &token]);
    std::env::remove_var("SECKILL_ADMIN_TOKEN");
    let config = from_env.expect("load").config;
    assert_eq!(
        config.admin_token.as_ref().map(Secret::expose),
        Some("from-the-env")
    );
    assert_eq!(
        config.admin_token_file, None,
        "the file not read is not shown as used"
    );
    let config = from_cli.expect("load").config;
    assert_eq!(
        config.admin_token.as_ref().map(Secret::expose),
        Some("from-the-file")
    );
    // Both on the command line: which is meant cannot be told.
    let err = load(&["--admin-token", "x", "--admin-token-file", &token]).expect_err("both");
    assert!(matches!(err, ConfigError::SecretTwice { .. }), "{err:?}");
}

#[test]
fn a_bad_or_missing_secret_file_is_an_error_naming_the_flag_and_the_file() {
    let _env = clean_env();
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = write(dir.path(), "empty", "\n");
    let missing = dir.path().join("missing");
    let missing = missing.to_str().expect("UTF-8");
    let long = write(
        dir.path(),
        "long",
        &"x".repeat(seckill_proto::MAX_TOKEN_LEN + 1),
    );
    let blank = write(dir.path(), "blank", "  \n");
    let two_lines = write(dir.path(), "two", "tok\n\n");
    // Read up to a bound, not to the end: /dev/zero has none.
    for path in [&empty, missing, &long, &blank, &two_lines, "/dev/zero"] {
        let err = load(&["--admin-token-file", path]).expect_err(path);
        assert!(matches!(err, ConfigError::SecretFile { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains("--admin-token-file") && message.contains(path),
            "{message}"
        );
    }
}

#[test]
fn store_urls_are_shown_without_their_passwords() {
    let _env = clean_env();
    let dir = tempfile::tempdir().expect("tempdir");
    let mysql = write(
        dir.path(),
        "mysql",
        "mysql://root:pw-in-file@db:3306/seckill\n",
    );
    let Loaded { config, effective } = load(&[
        "--redis",
        "redis://:pw-on-cli@127.0.0.1:6379",
        "--mysql-file",
        &mysql,
    ])
    .expect("load");
    assert_eq!(
        config.mysql.as_deref(),
        Some("mysql://root:pw-in-file@db:3306/seckill")
    );
    let shown = effective.to_string();
    assert!(!shown.contains("pw-"), "{shown}");
    assert!(
        shown.contains("redis=redis://:***@127.0.0.1:6379 (command line)"),
        "{shown}"
    );
    assert!(
        shown.contains("mysql=mysql://root:***@db:3306/seckill (--mysql-file"),
        "{shown}"
    );
    let seeds = load(&[
        "--redis-cluster",
        "redis://u:pw-seed@h:7001,h:7002,:pw-bare@h:7003",
    ])
    .expect("load");
    let shown = seeds.effective.to_string();
    assert!(!shown.contains("pw-"), "{shown}");
    assert!(
        shown.contains("redis-cluster=redis://u:***@h:7001,h:7002,:***@h:7003"),
        "{shown}"
    );
    // A password in the query string.
    let query = load(&[
        "--redis",
        "redis+unix:///run/redis.sock?db=1&pass=pw-query",
        "--mysql",
        "mysql://u@db/seckill?password=pw-query",
    ])
    .expect("load");
    let shown = query.effective.to_string();
    assert!(!shown.contains("pw-"), "{shown}");
    assert!(shown.contains("?db=1&pass=***"), "{shown}");
}

#[test]
fn redis_from_its_file_and_redis_cluster_together_are_refused() {
    let _env = clean_env();
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = write(dir.path(), "redis", "redis://127.0.0.1:6379");
    let config = load(&["--redis-file", &redis, "--redis-cluster", "h:7001"])
        .expect("load")
        .config;
    assert!(config.check().is_err());
}
