//! The sidecar's memory. glibc keeps memory that was freed for reuse,
//! per thread arena, so the index the watcher built (tens of MB for 100k
//! files, allocated on its threads) would stay in the resident set while
//! the statement and its base64 are made on the main thread. Handing it
//! back once the index is gone is what keeps the sidecar's peak near what
//! it actually holds (see docs/bench.md, "Sidecar peak RSS").

/// Returns free memory of every arena to the kernel.
pub fn release_free() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes a plain integer and only touches the
    // allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// An empty buffer with room for `capacity` bytes whose pages are already
/// mapped. A page touched for the first time costs a fault, ~2 µs each on
/// the virtual machines we measured: 8 ms for a 17 MB statement, paid on
/// the latency path unless done beforehand, on a core that is idle then.
pub fn prefaulted(capacity: usize) -> Vec<u8> {
    let mut v: Vec<u8> = Vec::with_capacity(capacity);
    let spare = v.spare_capacity_mut();
    if !populate(spare.as_mut_ptr().cast(), spare.len()) {
        for page in spare.chunks_mut(4096) {
            page[0].write(0);
        }
    }
    v
}

/// Maps the pages of `[ptr, ptr + len)` in one system call
/// (`MADV_POPULATE_WRITE`, Linux 5.14): a third cheaper than a fault per
/// page. False where the kernel does not know it.
fn populate(ptr: *mut u8, len: usize) -> bool {
    const MADV_POPULATE_WRITE: libc::c_int = 23;
    let page = 4096usize;
    let start = (ptr as usize).div_ceil(page) * page;
    let end = (ptr as usize + len) / page * page;
    if end <= start {
        return true;
    }
    // SAFETY: [start, end) lies inside the allocation; populating maps
    // zero pages where nothing was written yet and changes no contents.
    unsafe { libc::madvise(start as *mut libc::c_void, end - start, MADV_POPULATE_WRITE) == 0 }
}

/// [`prefaulted`] on another thread, while this one works on.
pub fn prefault_in_background(capacity: usize) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || prefaulted(capacity))
}

/// CPU time (user + system) this process used so far, all threads, in ms.
pub fn cpu_ms() -> u64 {
    // SAFETY: getrusage fills the zeroed struct.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut r) } != 0 {
        return 0;
    }
    let ms = |t: libc::timeval| t.tv_sec as u64 * 1000 + t.tv_usec as u64 / 1000;
    ms(r.ru_utime) + ms(r.ru_stime)
}

/// The process's peak resident set so far (VmHWM), in MiB; 0 if unknown.
pub fn peak_rss_mb() -> u64 {
    status_mb("VmHWM:")
}

/// The process's resident set now (VmRSS), in MiB; 0 if unknown.
pub fn rss_mb() -> u64 {
    status_mb("VmRSS:")
}

fn status_mb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}
