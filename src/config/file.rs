//! The `--config` file: TOML whose keys are the long flags without their
//! leading dashes (`redis-wait-timeout = "100ms"`), spelled as on the
//! command line so that one name serves the flag, the file and the docs.
//!
//! Each value is checked by its flag's own parser as the file is read, so
//! that a bad one is reported with its key and the file, not as a flag the
//! operator never typed.

use std::path::Path;

use toml::Value;

use super::layers::{ConfigError, NOT_SETTINGS};
use super::secrets;

/// The largest config file read: far above any real one, and a mistake
/// (`--config /dev/zero`) fails instead of filling the memory.
const MAX_FILE: u64 = 1 << 20;

/// The text of the file at `path`, if it is UTF-8 and at most `limit`
/// bytes.
pub(super) fn read_limited(path: &Path, limit: u64) -> std::io::Result<String> {
    use std::io::{Error, ErrorKind, Read};
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!("larger than {limit} bytes"),
        ));
    }
    String::from_utf8(bytes).map_err(|_| Error::new(ErrorKind::InvalidData, "not UTF-8 text"))
}

/// One setting of the file, as flags for clap.
pub struct Setting {
    /// The flag's id (`redis_wait_timeout`).
    pub id: String,
    /// `--redis-wait-timeout=100ms`, or `--flag` for a switch that is on,
    /// nothing for one that is off.
    pub flags: Vec<String>,
}

/// Reads and checks the file at `path` against the flags of `cmd`.
pub fn read(cmd: &clap::Command, path: &Path) -> Result<Vec<Setting>, ConfigError> {
    let text = read_limited(path, MAX_FILE).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax {
            path: path.to_owned(),
            message: syntax_error(&text, &e),
        })?;
    // Each value is checked alone, by a command that reads no environment,
    // so that only the file's own value can be at fault.
    let probe = cmd.clone().mut_args(|arg| arg.env(None));
    let mut settings = Vec::with_capacity(table.len());
    for (key, value) in &table {
        let bad = |message: String| ConfigError::BadValue {
            path: path.to_owned(),
            key: key.clone(),
            message,
        };
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(key) && !NOT_SETTINGS.contains(&a.get_id().as_str()))
            .ok_or_else(|| ConfigError::UnknownKey {
                path: path.to_owned(),
                key: key.clone(),
                hint: hint(cmd, key),
            })?;
        let flags = flags(arg, key, value).map_err(bad)?;
        let mut line = vec!["seckill-server".to_owned()];
        line.extend(flags.iter().cloned());
        if let Err(e) = probe.clone().try_get_matches_from(line) {
            let message = match secrets::refused_secret(&e) {
                Some((_, reason)) => format!("refused (not shown: it is a secret): {reason}"),
                None => clap_message(&e),
            };
            return Err(bad(message));
        }
        settings.push(Setting {
            id: arg.get_id().as_str().to_owned(),
            flags,
        });
    }
    Ok(settings)
}

/// `value` as the flags that give it on a command line.
fn flags(arg: &clap::Arg, key: &str, value: &Value) -> Result<Vec<String>, String> {
    if !arg.get_action().takes_values() {
        return match value {
            Value::Boolean(true) => Ok(vec![format!("--{key}")]),
            Value::Boolean(false) => Ok(Vec::new()),
            _ => Err("expected true or false".into()),
        };
    }
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Boolean(b) => b.to_string(),
        // A list where the flag takes one (comma-separated on the command
        // line, as --redis-cluster).
        Value::Array(items) if arg.get_value_delimiter().is_some() => {
            let items: Result<Vec<String>, String> = items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err("expected a list of strings".to_owned()),
                })
                .collect();
            items?.join(",")
        }
        Value::Array(_) => return Err("expected one value, not a list".into()),
        Value::Table(_) => return Err("expected a value, not a table".into()),
        Value::Datetime(_) => return Err("expected a string or a number, not a date".into()),
    };
    // `=`: a value that begins with a dash is still this flag's value.
    Ok(vec![format!("--{key}={text}")])
}

/// Where the file stops being TOML and why, without the line itself: toml's
/// own message quotes it, and the line may hold a secret (`admin-token =
/// unquoted`).
fn syntax_error(text: &str, e: &toml::de::Error) -> String {
    let why = e.message().trim_end();
    let Some(span) = e.span() else {
        return why.to_owned();
    };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column}: {why}")
}

/// What clap says is wrong, without its "error: " and its advice to try
/// `--help` (the file has no help to try).
pub fn clap_message(e: &clap::Error) -> String {
    let rendered = e.to_string();
    let lines: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
        .collect();
    let joined = lines.join(" ");
    joined.strip_prefix("error: ").unwrap_or(&joined).to_owned()
}

/// "; did you mean `...`?" when the key is a flag spelled the Rust way
/// (`redis_wait`) or is a flag's name with a different case.
fn hint(cmd: &clap::Command, key: &str) -> String {
    let wanted = key.replace('_', "-").to_ascii_lowercase();
    cmd.get_arguments()
        .filter_map(clap::Arg::get_long)
        .find(|long| *long == wanted && !NOT_SETTINGS.contains(&long.replace('-', "_").as_str()))
        .map(|long| format!("; did you mean `{long}`?"))
        .unwrap_or_default()
}
