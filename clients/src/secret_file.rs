//! A secret read from a file of its own (`--token-file PATH`), as systemd's
//! `LoadCredential=` provides one, so that it never has to be on a command
//! line (where `ps` shows it) or in the environment (which a child
//! inherits). `seckill-cli` and `seckill-web` read theirs here; the server
//! reads its own the same way (`--admin-token-file`).
//!
//! The file holds the secret and nothing else: one trailing line end
//! (`\n` or `\r\n`, which an editor or `echo` adds) is dropped; an empty
//! file, a blank one or one of several lines is refused rather than taken
//! as a secret nobody meant. No error repeats the file's contents.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// The largest secret file read: a token or a session secret is a few
/// dozen bytes, so a bigger file is a mistake (`/dev/zero`, a log), which
/// fails here instead of filling the memory.
pub const MAX_LEN: u64 = 4 << 10;

/// Why a secret file gave no secret. Each names the path, never the
/// contents.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// It could not be opened or read (missing, no permission, a
    /// directory).
    #[error("cannot read the secret file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// It is larger than [`MAX_LEN`].
    #[error("the secret file {} is larger than {MAX_LEN} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// It is not UTF-8 text.
    #[error("the secret file {} is not UTF-8 text", path.display())]
    NotText {
        /// The file.
        path: PathBuf,
    },
    /// It holds nothing but perhaps white space and a line end.
    #[error("the secret file {} holds no secret (empty or blank)", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// It holds more than one line: one secret per file.
    #[error("the secret file {} has more than one line: one secret per file", path.display())]
    SeveralLines {
        /// The file.
        path: PathBuf,
    },
}

/// The secret in the file at `path`: its whole text but one trailing line
/// end.
pub fn read(path: &Path) -> Result<String, Error> {
    let mut bytes = Vec::new();
    // One byte past the limit tells a file of exactly MAX_LEN bytes from a
    // larger one, without reading the larger one whole.
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_LEN + 1).read_to_end(&mut bytes))
        .map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
    if bytes.len() as u64 > MAX_LEN {
        return Err(Error::TooLarge {
            path: path.to_owned(),
        });
    }
    // No `FromUtf8Error` kept as a source: it holds the bytes.
    let mut text = String::from_utf8(bytes).map_err(|_| Error::NotText {
        path: path.to_owned(),
    })?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    if text.trim().is_empty() {
        return Err(Error::Empty {
            path: path.to_owned(),
        });
    }
    if text.contains(['\n', '\r']) {
        return Err(Error::SeveralLines {
            path: path.to_owned(),
        });
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file holding `contents`, in a directory removed with it.
    fn file(contents: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        std::fs::write(&path, contents).expect("write the secret file");
        (dir, path)
    }

    #[test]
    fn one_trailing_line_end_is_dropped() {
        for (contents, secret) in [
            (&b"s3cret"[..], "s3cret"),
            (b"s3cret\n", "s3cret"),
            (b"s3cret\r\n", "s3cret"),
            // Spaces are the secret's own: only the line end goes.
            (b" s3 cret \n", " s3 cret "),
        ] {
            let (_dir, path) = file(contents);
            assert_eq!(read(&path).expect("a secret"), secret, "{contents:?}");
        }
    }

    #[test]
    fn an_empty_blank_or_multi_line_file_is_refused() {
        for contents in [&b""[..], b"\n", b"\r\n", b"  \t\n"] {
            let (_dir, path) = file(contents);
            assert!(
                matches!(read(&path), Err(Error::Empty { .. })),
                "{contents:?}"
            );
        }
        for contents in [&b"s3cret\n\n"[..], b"one\ntwo\n", b"s3cret\r"] {
            let (_dir, path) = file(contents);
            assert!(
                matches!(read(&path), Err(Error::SeveralLines { .. })),
                "{contents:?}"
            );
        }
    }

    #[test]
    fn a_file_over_the_limit_is_refused_and_one_at_it_read() {
        let at_limit = vec![b'x'; MAX_LEN as usize];
        let (_dir, path) = file(&at_limit);
        assert_eq!(read(&path).map(|s| s.len()).ok(), Some(MAX_LEN as usize));

        let over = vec![b'x'; MAX_LEN as usize + 1];
        let (_dir, path) = file(&over);
        let err = read(&path).expect_err("too large");
        assert!(matches!(err, Error::TooLarge { .. }), "{err:?}");
        assert!(err.to_string().contains("4096 bytes"), "{err}");
    }

    #[test]
    fn errors_name_the_path_and_never_the_contents() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("no-such-secret");
        let err = read(&missing).expect_err("missing");
        assert!(matches!(err, Error::Read { .. }), "{err:?}");
        assert!(err.to_string().contains("no-such-secret"), "{err}");

        // Files that are refused for what they hold: the message and the
        // whole chain name the file, not a byte of it.
        for contents in [&b"hunter2-first\nhunter2-second\n"[..], b"hunter2\xff"] {
            let (_dir, path) = file(contents);
            let err = read(&path).expect_err("refused");
            let mut chain = err.to_string();
            let mut source = std::error::Error::source(&err);
            while let Some(e) = source {
                chain.push_str(&format!(": {e}"));
                source = e.source();
            }
            assert!(chain.contains(&path.display().to_string()), "{chain}");
            assert!(!chain.contains("hunter2"), "{chain}");
            assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
        }
    }
}
