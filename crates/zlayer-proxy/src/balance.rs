//! Balancing over a route's healthy replicas. The default policy takes two
//! replicas at random and sends the request to the one with fewer requests
//! outstanding (power of two choices); round robin is the other policy.
//! Each replica's count lives in one [`Upstream`] shared by every route that
//! reaches it, so a replica taken out of the routes can be waited on until
//! its last request has finished (drain).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use rand::Rng;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Policy {
    /// Least outstanding requests of two chosen at random.
    #[default]
    PowerOfTwo,
    RoundRobin,
}

/// One replica's address and how many requests it has in flight.
#[derive(Debug)]
pub struct Upstream {
    pub addr: SocketAddr,
    authority: http::uri::Authority,
    outstanding: AtomicUsize,
}

impl Upstream {
    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Acquire)
    }
}

/// A request's hold on an upstream; the count drops when it is dropped.
#[derive(Debug)]
pub struct Lease(Arc<Upstream>);

impl Lease {
    pub fn addr(&self) -> SocketAddr {
        self.0.addr
    }

    /// `http://ADDR`, made once per upstream.
    pub fn authority(&self) -> &http::uri::Authority {
        &self.0.authority
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::AcqRel);
    }
}

pub struct Balancer {
    policy: Policy,
    upstreams: Vec<Arc<Upstream>>,
    /// Requests sent to each upstream through this route (same order).
    sent: Vec<prometheus::IntCounter>,
    next: AtomicUsize,
}

impl Balancer {
    pub fn new(policy: Policy, upstreams: Vec<Arc<Upstream>>) -> Balancer {
        Balancer {
            policy,
            upstreams,
            sent: Vec::new(),
            next: AtomicUsize::new(0),
        }
    }

    /// Counts each pick of an upstream in `sent` (one counter per upstream).
    pub fn counting(mut self, sent: Vec<prometheus::IntCounter>) -> Balancer {
        self.sent = sent;
        self
    }

    /// A replica for the next request, other than `avoid` where there is another.
    pub fn pick(&self, avoid: Option<SocketAddr>) -> Option<Lease> {
        // Indexes into `upstreams`, without the one to avoid; no allocation.
        let skip = avoid.and_then(|a| self.upstreams.iter().position(|u| u.addr == a));
        let n = self.upstreams.len() - usize::from(skip.is_some());
        let at = |i: usize| match skip {
            Some(s) if i >= s => i + 1,
            _ => i,
        };
        let chosen = match n {
            0 => return None,
            1 => at(0),
            n => match self.policy {
                Policy::RoundRobin => at(self.next.fetch_add(1, Ordering::Relaxed) % n),
                Policy::PowerOfTwo => {
                    let mut rng = rand::thread_rng();
                    let a = rng.gen_range(0..n);
                    let b = (a + rng.gen_range(1..n)) % n;
                    let (a, b) = (at(a), at(b));
                    if self.upstreams[b].outstanding() < self.upstreams[a].outstanding() {
                        b
                    } else {
                        a
                    }
                }
            },
        };
        let up = &self.upstreams[chosen];
        up.outstanding.fetch_add(1, Ordering::AcqRel);
        if let Some(c) = self.sent.get(chosen) {
            c.inc();
        }
        Some(Lease(up.clone()))
    }
}

/// Every upstream the proxy knows, by address, so routes rebuilt after a
/// change keep the counts of the requests already in flight.
#[derive(Default)]
pub struct UpstreamPool {
    known: Mutex<HashMap<SocketAddr, Weak<Upstream>>>,
}

impl UpstreamPool {
    pub fn get(&self, addr: SocketAddr) -> Arc<Upstream> {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(u) = known.get(&addr).and_then(Weak::upgrade) {
            return u;
        }
        let u = Arc::new(Upstream {
            addr,
            authority: http::uri::Authority::try_from(addr.to_string().as_str())
                .expect("a socket address is an authority"),
            outstanding: AtomicUsize::new(0),
        });
        known.insert(addr, Arc::downgrade(&u));
        u
    }

    /// Forgets upstreams nothing holds any more.
    pub fn sweep(&self) {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known.retain(|_, u| u.strong_count() > 0);
    }

    /// Requests in flight to any upstream at `ip`.
    pub fn outstanding_at(&self, ip: IpAddr) -> usize {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known
            .iter()
            .filter(|(a, _)| a.ip() == ip)
            .filter_map(|(_, u)| u.upgrade())
            .map(|u| u.outstanding())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, i], 80))
    }

    #[test]
    fn power_of_two_never_picks_the_busier_of_two() {
        let pool = UpstreamPool::default();
        let b = Balancer::new(
            Policy::PowerOfTwo,
            vec![pool.get(addr(1)), pool.get(addr(2))],
        );
        // Five requests in flight on 10.0.0.1 through another route to it.
        let other_route = Balancer::new(Policy::PowerOfTwo, vec![pool.get(addr(1))]);
        let held: Vec<Lease> = (0..5).map(|_| other_route.pick(None).unwrap()).collect();
        let busy_before = pool.get(addr(2)).outstanding();
        let fresh: Vec<Lease> = (0..3).map(|_| b.pick(None).unwrap()).collect();
        assert!(fresh.iter().all(|l| l.addr() == addr(2)));
        assert_eq!(pool.get(addr(2)).outstanding(), busy_before + 3);
        drop((held, fresh));
    }

    #[test]
    fn round_robin_takes_each_in_turn() {
        let pool = UpstreamPool::default();
        let b = Balancer::new(
            Policy::RoundRobin,
            (1..=3).map(|i| pool.get(addr(i))).collect(),
        );
        let seen: Vec<SocketAddr> = (0..6).map(|_| b.pick(None).unwrap().addr()).collect();
        assert_eq!(seen, [1, 2, 3, 1, 2, 3].map(addr));
    }

    #[test]
    fn a_retry_avoids_the_replica_that_failed_unless_it_is_the_only_one() {
        let pool = UpstreamPool::default();
        let two = Balancer::new(
            Policy::PowerOfTwo,
            vec![pool.get(addr(1)), pool.get(addr(2))],
        );
        for _ in 0..20 {
            assert_eq!(two.pick(Some(addr(1))).unwrap().addr(), addr(2));
        }
        let one = Balancer::new(Policy::PowerOfTwo, vec![pool.get(addr(1))]);
        assert!(one.pick(Some(addr(1))).is_none());
        assert!(Balancer::new(Policy::RoundRobin, Vec::new())
            .pick(None)
            .is_none());
    }

    #[test]
    fn counts_outlive_a_route_rebuild_until_the_last_lease_drops() {
        let pool = UpstreamPool::default();
        let lease = Balancer::new(Policy::PowerOfTwo, vec![pool.get(addr(7))])
            .pick(None)
            .unwrap();
        // The route that held it is gone; the lease still counts.
        pool.sweep();
        assert_eq!(pool.outstanding_at(addr(7).ip()), 1);
        let rebuilt = pool.get(addr(7));
        assert_eq!(rebuilt.outstanding(), 1, "a rebuilt route shares the count");
        drop(lease);
        assert_eq!(pool.outstanding_at(addr(7).ip()), 0);
    }
}
