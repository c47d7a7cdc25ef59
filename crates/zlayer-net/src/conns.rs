//! The connections one listener holds open, each with when it last moved a
//! byte and which backends it reaches. A listener admits at most `max`; one
//! over the cap evicts the connection that has been idle the longest, so a
//! flood of idle sockets cannot lock real clients out or use up the node's
//! descriptors. Published ports and the ingress proxy share this table.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

pub struct ConnectionTable {
    max: usize,
    epoch: Instant,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    open: HashMap<u64, Open>,
}

struct Open {
    last_active: Arc<AtomicU64>,
    targets: Arc<Mutex<Vec<SocketAddr>>>,
    evict: oneshot::Sender<()>,
}

/// One admitted connection: its id (hand it back to [`ConnectionTable::forget`]),
/// its activity, and a receiver that fires when the table evicts it.
pub struct Admitted {
    pub id: u64,
    pub activity: Activity,
    pub evicted: oneshot::Receiver<()>,
}

/// Where one connection goes: the backends it may still reach (one, once
/// connected) and the milliseconds since the table's epoch at which it last
/// moved data.
#[derive(Clone)]
pub struct Activity {
    epoch: Instant,
    last: Arc<AtomicU64>,
    targets: Arc<Mutex<Vec<SocketAddr>>>,
}

impl Activity {
    pub fn touch(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last.store(now, Ordering::Relaxed);
    }

    /// How long since it last moved data.
    pub fn idle_for(&self) -> std::time::Duration {
        let last = std::time::Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }

    pub fn connected(&self, to: SocketAddr) {
        *self.targets.lock().unwrap_or_else(|e| e.into_inner()) = vec![to];
    }
}

impl ConnectionTable {
    pub fn new(max: usize) -> ConnectionTable {
        ConnectionTable {
            max: max.max(1),
            epoch: Instant::now(),
            table: Mutex::new(Table::default()),
        }
    }

    /// Registers a new connection that may reach `targets`, evicting the
    /// longest idle one when the table is full.
    pub fn admit(&self, targets: Vec<SocketAddr>) -> Admitted {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if t.open.len() >= self.max {
            let idlest = t
                .open
                .iter()
                .min_by_key(|(_, o)| o.last_active.load(Ordering::Relaxed))
                .map(|(id, _)| *id);
            if let Some(gone) = idlest.and_then(|id| t.open.remove(&id)) {
                let _ = gone.evict.send(());
            }
        }
        let activity = Activity {
            epoch: self.epoch,
            last: Arc::new(AtomicU64::new(0)),
            targets: Arc::new(Mutex::new(targets)),
        };
        activity.touch();
        let (evict, evicted) = oneshot::channel();
        let id = t.next_id;
        t.next_id += 1;
        t.open.insert(
            id,
            Open {
                last_active: activity.last.clone(),
                targets: activity.targets.clone(),
                evict,
            },
        );
        Admitted {
            id,
            activity,
            evicted,
        }
    }

    /// Whether an open connection reaches, or may still reach, a backend at `ip`.
    pub fn reaches(&self, ip: IpAddr) -> bool {
        let t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        t.open.values().any(|o| {
            o.targets
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .any(|a| a.ip() == ip)
        })
    }

    /// Resolves once no open connection reaches, or may still reach, a
    /// backend at `ip`; the caller bounds the wait.
    pub async fn drained(self: Arc<Self>, ip: IpAddr) {
        while self.reaches(ip) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub fn forget(&self, id: u64) {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        t.open.remove(&id);
    }

    pub fn len(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .open
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A stream that records when it last moved data either way.
pub struct Watched<S> {
    inner: S,
    activity: Activity,
}

impl<S> Watched<S> {
    pub fn new(inner: S, activity: Activity) -> Watched<S> {
        Watched { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_never_holds_more_than_its_cap() {
        let open = ConnectionTable::new(2);
        let mut evictions = Vec::new();
        for _ in 0..5 {
            evictions.push(open.admit(Vec::new()).evicted);
        }
        assert_eq!(open.len(), 2);
        let evicted = evictions
            .into_iter()
            .filter_map(|mut e| e.try_recv().ok())
            .count();
        assert_eq!(evicted, 3);
    }
}
