//! Records the git commit the server was built from, for `--version` and
//! the `seckill_build_info` metric. A build outside a git checkout (a
//! crates.io tarball) says "unknown".

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (out.status.success() && !text.is_empty()).then(|| text.to_owned())
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=SECKILL_GIT_COMMIT={commit}");
    println!("cargo:rerun-if-changed=build.rs");
    // Run again when HEAD moves (a commit, a checkout, in a worktree too),
    // not on every build: only files that exist, since cargo reruns a
    // script on every build for a path that is missing (a packed ref).
    let head = git(&["rev-parse", "--git-path", "HEAD"]);
    let branch = git(&["symbolic-ref", "-q", "HEAD"])
        .and_then(|reference| git(&["rev-parse", "--git-path", &reference]));
    for path in [head, branch].into_iter().flatten() {
        if Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
