//! Giving freed memory back to the operating system.
//!
//! A burst (a slow consumer's pending bytes, thousands of connections at once) makes the
//! C allocator grow its heaps; once the burst is over the memory is free but, with
//! glibc, mostly stays resident: the heap is only trimmed from its top, and after a
//! large block is freed the allocator raises its mmap threshold, so the next large
//! blocks come from the heap too. Resident memory then stays at the burst's high-water
//! mark for good. A periodic `malloc_trim` returns free pages from the middle of every
//! heap as well, so resident memory follows what is actually in use.

use std::time::Duration;

/// Blocks at least this large are mapped on their own and unmapped when freed.
pub const MMAP_THRESHOLD: usize = 128 * 1024;

/// Fixes the allocator's mmap threshold at [`MMAP_THRESHOLD`] (glibc). By default glibc
/// raises the threshold to the size of each large block freed, up to 32 MiB, after which
/// the buffers of a burst come from the heap and leave it fragmented; fixed, a burst's
/// large buffers go back to the system as soon as they are freed. Call once at start.
pub fn configure_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int);
    }
}

/// How often free memory is returned; a trim over small heaps costs well under a
/// millisecond.
pub const TRIM_INTERVAL: Duration = Duration::from_secs(1);

/// Returns the allocator's free pages to the operating system, where the allocator
/// offers a way to (glibc); elsewhere does nothing.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Calls [`release_free_memory`] every [`TRIM_INTERVAL`], forever; spawn it on the
/// server's runtime.
pub async fn release_free_memory_periodically() {
    let mut tick = tokio::time::interval(TRIM_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        release_free_memory();
    }
}
