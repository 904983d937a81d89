//! Giving memory back to the system after connections that buffered many
//! replies have gone.
//!
//! glibc's malloc keeps what is freed in its per-thread arenas and returns
//! to the system only what sits at the top of each: after 1,500 connections
//! that did not read their replies closed, the server still held about
//! 115 MiB (BENCHMARKS.md, "The reactor at the limit"). `malloc_trim`
//! releases every whole free page of every arena. It takes malloc's locks
//! and walks the arenas, so a reactor calls it only once it has freed a
//! good deal, at most once a second (its sweep).

/// Buffer bytes a reactor frees before it asks malloc to give memory back.
pub const TRIM_AFTER: usize = 16 << 20;

/// Asks malloc to return its free pages to the system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn give_back() {
    // SAFETY: malloc_trim takes no pointer and works on malloc's own state
    // under malloc's own locks; glibc documents it as safe to call from any
    // thread at any time (MT-Safe).
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other allocators return memory by themselves, or not at all.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn give_back() {}
