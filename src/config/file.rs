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
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
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
            return Err(bad(clap_message(&e)));
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
