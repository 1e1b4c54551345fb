//! Where the time of one attestation went: each phase runs inside a
//! tracing span of its own (JSON logs carry it as context) and its
//! duration is kept, so the final log event can report every phase under
//! the field names scripts/bench.sh reads (`finalize_ms`, `walk_ms`, ...).
use std::time::Instant;

#[derive(Debug)]
pub struct Phases {
    start: Instant,
    done: Vec<(&'static str, u64)>,
}

impl Default for Phases {
    fn default() -> Self {
        Phases::new()
    }
}

impl Phases {
    pub fn new() -> Self {
        Phases {
            start: Instant::now(),
            done: Vec::new(),
        }
    }

    /// Runs `f` as phase `name`.
    pub fn run<T>(&mut self, name: &'static str, f: impl FnOnce() -> T) -> T {
        let span = tracing::info_span!("phase", name);
        let _entered = span.enter();
        let t = Instant::now();
        let out = f();
        self.record(name, t);
        out
    }

    /// Records phase `name` as having run from `since` until now.
    pub fn record(&mut self, name: &'static str, since: Instant) {
        self.done.push((name, since.elapsed().as_millis() as u64));
    }

    /// Milliseconds spent in `name` (all its runs), 0 if it never ran.
    pub fn ms(&self, name: &str) -> u64 {
        self.done
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, ms)| ms)
            .sum()
    }

    /// Milliseconds since these phases began.
    pub fn total_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
}
