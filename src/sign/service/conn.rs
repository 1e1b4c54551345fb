//! Connection accounting, so that nobody who merely reaches the port can
//! keep the signer from serving.
//!
//! Every connection holds a slot. Until its request head has arrived (TLS
//! handshake included) a connection is *idle* and can be evicted: when a
//! new connection would pass the cap, the oldest idle one is closed, and
//! one address holding more than its share of idle connections loses its
//! own oldest first. Connections whose request is being served are never
//! evicted. So 2,000 half-open connections from one pod cost that pod its
//! own connections, not everyone's; and the header deadline closes them
//! anyway.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

pub(super) struct Conns {
    max: usize,
    per_address: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next: u64,
    active: usize,
    idle: BTreeMap<u64, (IpAddr, Arc<Notify>)>,
    idle_by_address: HashMap<IpAddr, BTreeSet<u64>>,
}

impl Inner {
    fn forget_idle(&mut self, id: u64) -> Option<Arc<Notify>> {
        let (ip, n) = self.idle.remove(&id)?;
        if let Some(set) = self.idle_by_address.get_mut(&ip) {
            set.remove(&id);
            if set.is_empty() {
                self.idle_by_address.remove(&ip);
            }
        }
        Some(n)
    }

    fn evict(&mut self, id: u64) -> bool {
        match self.forget_idle(id) {
            Some(n) => {
                // notify_one keeps the wakeup if the task is not waiting yet.
                n.notify_one();
                true
            }
            None => false,
        }
    }

    fn evict_oldest(&mut self) -> bool {
        match self.idle.keys().next().copied() {
            Some(id) => self.evict(id),
            None => false,
        }
    }
}

/// One connection's place; dropping it frees the place.
pub(super) struct Slot {
    conns: Arc<Conns>,
    id: u64,
    /// Fires when the connection is evicted.
    pub evicted: Arc<Notify>,
}

impl Conns {
    /// `max` connections in all; idle ones per address at most
    /// `per_address`.
    pub(super) fn new(max: usize, per_address: usize) -> Arc<Conns> {
        Arc::new(Conns {
            max: max.max(1),
            per_address: per_address.max(1),
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a new connection from `ip`, evicting idle connections to
    /// make room; None when every connection is busy serving a request.
    pub(super) fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let mut g = self.lock();
        let own_oldest = g
            .idle_by_address
            .get(&ip)
            .filter(|s| s.len() >= self.per_address)
            .and_then(|s| s.first().copied());
        if let Some(id) = own_oldest {
            g.evict(id);
        }
        if g.active >= self.max && !g.evict_oldest() {
            return None;
        }
        let id = g.next;
        g.next += 1;
        g.active += 1;
        let evicted = Arc::new(Notify::new());
        g.idle.insert(id, (ip, evicted.clone()));
        g.idle_by_address.entry(ip).or_default().insert(id);
        Some(Slot {
            conns: self.clone(),
            id,
            evicted,
        })
    }

    /// Closes up to `n` of the oldest idle connections (out of file
    /// descriptors); how many it closed.
    pub(super) fn evict_oldest(&self, n: usize) -> usize {
        let mut g = self.lock();
        (0..n).take_while(|_| g.evict_oldest()).count()
    }

    pub(super) fn active(&self) -> usize {
        self.lock().active
    }
}

impl Slot {
    /// The request head has arrived: from now on the connection is served,
    /// not evicted (its own deadlines still apply).
    pub(super) fn busy(&self) {
        self.conns.lock().forget_idle(self.id);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut g = self.conns.lock();
        g.forget_idle(self.id);
        g.active -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_connections_make_room_busy_ones_do_not() {
        let c = Conns::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let s1 = c.admit(a).unwrap();
        let s2 = c.admit(a).unwrap();
        // A third idle connection from `a` evicts a's oldest.
        let s3 = c.admit(a).unwrap();
        assert!(s1.evicted.notified().now_or_never_ready());
        drop(s1);
        s2.busy();
        s3.busy();
        let s4 = c.admit(b).unwrap();
        assert_eq!(c.active(), 3);
        // Full: the only idle connection (s4) makes room.
        let s5 = c.admit(b).unwrap();
        assert!(s4.evicted.notified().now_or_never_ready());
        drop(s4);
        s5.busy();
        // Full of busy connections: no room.
        assert!(c.admit(b).is_none());
        drop(s2);
        assert!(c.admit(b).is_some());
    }

    trait Ready {
        fn now_or_never_ready(self) -> bool;
    }
    impl<F: std::future::Future> Ready for F {
        fn now_or_never_ready(self) -> bool {
            let waker = std::task::Waker::noop();
            let mut cx = std::task::Context::from_waker(waker);
            let mut f = std::pin::pin!(self);
            f.as_mut().poll(&mut cx).is_ready()
        }
    }
}
