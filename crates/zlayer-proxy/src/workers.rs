//! The ingress's threads. Each runs a runtime of its own that accepts from
//! every listener and serves what it accepted from the first byte to the
//! last, with the connections to replicas that connection opened: a request
//! never changes thread. Against the node's shared multi-threaded runtime,
//! which moves tasks between threads and wakes them across, that took 9-20%
//! off the CPU a request costs (docs/benchmarks.md).
//!
//! The listeners are shared (one socket each, cloned), so a port is still
//! owned by one process alone; every thread waits on it and one takes each
//! connection.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::{listen, Shared};

/// The running threads; dropping this stops them and closes every connection.
pub(crate) struct Workers {
    stop: watch::Sender<bool>,
}

impl Drop for Workers {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// How many threads serve when the config leaves it to the proxy: one per CPU.
pub(crate) fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

pub(crate) fn start(
    threads: usize,
    shared: &Arc<Shared>,
    listeners: Vec<(std::net::TcpListener, Option<TlsAcceptor>)>,
) -> std::io::Result<Workers> {
    let (stop, _) = watch::channel(false);
    for i in 0..threads.max(1) {
        let mine = listeners
            .iter()
            .map(|(l, tls)| Ok((l.try_clone()?, tls.clone())))
            .collect::<std::io::Result<Vec<_>>>()?;
        let (shared, mut stopped) = (shared.clone(), stop.subscribe());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name(format!("zlayer-ingress-{i}"))
            .spawn(move || {
                runtime.block_on(async move {
                    for (listener, tls) in mine {
                        match TcpListener::from_std(listener) {
                            Ok(l) => drop(tokio::spawn(listen::serve(shared.clone(), l, tls))),
                            Err(e) => tracing::error!("ingress thread {i}: listener: {e}"),
                        }
                    }
                    // Also ends when the proxy is dropped without sending.
                    let _ = stopped.wait_for(|s| *s).await;
                });
            })?;
    }
    Ok(Workers { stop })
}
