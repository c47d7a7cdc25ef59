//! The unix socket's open connections. At the cap, a new connection closes
//! the oldest one with no request in flight, so idle sockets (a stuck or
//! runaway local client) cannot lock the CLI out; when every connection is
//! busy with a request, the new one is closed instead.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::task::AbortHandle;

/// Requests a connection has in flight; the server counts them.
#[derive(Clone, Default)]
pub(crate) struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// Counts a request until the returned guard drops.
    pub(crate) fn begin(&self) -> Busy {
        self.0.fetch_add(1, Ordering::Relaxed);
        Busy(self.0.clone())
    }

    fn idle(&self) -> bool {
        self.0.load(Ordering::Relaxed) == 0
    }
}

pub(crate) struct Busy(Arc<AtomicUsize>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(crate) struct LocalConnections {
    max: usize,
    open: VecDeque<(AbortHandle, InFlight)>,
}

impl LocalConnections {
    pub(crate) fn new(max: usize) -> LocalConnections {
        LocalConnections {
            max,
            open: VecDeque::new(),
        }
    }

    /// Makes room for one more connection; false when every open one is busy.
    pub(crate) fn make_room(&mut self) -> bool {
        self.open.retain(|(task, _)| !task.is_finished());
        if self.open.len() < self.max {
            return true;
        }
        match self.open.iter().position(|(_, f)| f.idle()) {
            Some(i) => {
                if let Some((task, _)) = self.open.remove(i) {
                    task.abort();
                }
                true
            }
            None => false,
        }
    }

    pub(crate) fn add(&mut self, task: AbortHandle, in_flight: InFlight) {
        self.open.push_back((task, in_flight));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_table_closes_its_oldest_idle_connection_never_a_busy_one() {
        let mut conns = LocalConnections::new(2);
        let forever = || tokio::spawn(std::future::pending::<()>());
        let (busy, idle) = (InFlight::default(), InFlight::default());
        let (first, second) = (forever(), forever());
        let _request = busy.begin();
        assert!(conns.make_room());
        conns.add(first.abort_handle(), busy.clone());
        assert!(conns.make_room());
        conns.add(second.abort_handle(), idle.clone());
        assert!(conns.make_room(), "the idle one makes way");
        tokio::task::yield_now().await;
        assert!(second.is_finished() && !first.is_finished());
        let third = forever();
        conns.add(third.abort_handle(), busy.clone());
        assert!(
            !conns.make_room(),
            "every connection is busy: the new one is refused"
        );
        drop(_request);
        assert!(
            conns.make_room(),
            "a finished request makes its connection idle"
        );
        tokio::task::yield_now().await;
        assert!(first.is_finished() && !third.is_finished());
    }
}
