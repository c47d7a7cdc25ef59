//! The WireGuard device behind one interface: the kernel's where the
//! module exists, else boringtun in userspace. Every call runs on a
//! blocking thread under a timeout.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use defguard_boringtun::device::{DeviceConfig, DeviceHandle};
use defguard_wireguard_rs::host::Host;
use defguard_wireguard_rs::key::Key;
use defguard_wireguard_rs::peer::Peer;
use defguard_wireguard_rs::{
    InterfaceConfiguration, Kernel, Userspace, WGApi, WireguardInterfaceApi,
};
use serde::{Deserialize, Serialize};

use crate::error::OverlayError;

/// How long one call to the device may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Which WireGuard implementation runs the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    Kernel,
    Userspace,
}

impl DeviceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Kernel => "kernel",
            DeviceKind::Userspace => "userspace",
        }
    }
}

type Api = Box<dyn WireguardInterfaceApi + Send>;

pub(crate) struct Device {
    pub ifname: String,
    pub kind: DeviceKind,
    api: Arc<Mutex<Api>>,
    /// The userspace device's threads; dropping it stops them.
    _userspace: Option<Mutex<DeviceHandle>>,
}

impl Device {
    /// Creates the interface: the kernel device unless `only` says
    /// otherwise or the kernel has no WireGuard, then boringtun.
    pub async fn create(
        ifname: &str,
        only: Option<DeviceKind>,
        threads: usize,
    ) -> Result<Device, OverlayError> {
        let threads = threads.max(1);
        let mut last = String::new();
        for kind in [DeviceKind::Kernel, DeviceKind::Userspace] {
            if only.is_some_and(|o| o != kind) {
                continue;
            }
            // A kernel device outlives a killed node, and an interface of
            // this (per data dir) name is ours: start from a fresh one.
            crate::routes::delete_link(ifname).await;
            let name = ifname.to_string();
            let made = blocking(ifname, "create", move || create(&name, kind, threads)).await?;
            match made {
                Ok((api, userspace)) => {
                    if userspace.is_some() {
                        crate::routes::set_up(ifname).await?;
                    }
                    tracing::info!(ifname, kind = kind.as_str(), "WireGuard device created");
                    return Ok(Device {
                        ifname: ifname.to_string(),
                        kind,
                        api: Arc::new(Mutex::new(api)),
                        _userspace: userspace.map(Mutex::new),
                    });
                }
                Err(e) => {
                    tracing::debug!(ifname, kind = kind.as_str(), "no WireGuard device: {e}");
                    last = format!("{} device: {e}", kind.as_str());
                }
            }
        }
        Err(OverlayError::Device {
            ifname: ifname.to_string(),
            reason: last,
        })
    }

    pub async fn configure(&self, cfg: InterfaceConfiguration) -> Result<(), OverlayError> {
        self.call("configure", move |api| api.configure_interface(&cfg))
            .await
    }

    pub async fn set_peer(&self, peer: Peer) -> Result<(), OverlayError> {
        self.call("set peer", move |api| api.configure_peer(&peer))
            .await
    }

    pub async fn remove_peer(&self, key: Key) -> Result<(), OverlayError> {
        self.call("remove peer", move |api| api.remove_peer(&key))
            .await
    }

    pub async fn read(&self) -> Result<Host, OverlayError> {
        self.call("read", |api| api.read_interface_data()).await
    }

    async fn call<T, F>(&self, what: &'static str, f: F) -> Result<T, OverlayError>
    where
        T: Send + 'static,
        F: FnOnce(&Api) -> Result<T, defguard_wireguard_rs::error::WireguardInterfaceError>
            + Send
            + 'static,
    {
        let api = self.api.clone();
        let ifname = self.ifname.clone();
        blocking(&self.ifname, what, move || {
            let api = api.lock().unwrap_or_else(|e| e.into_inner());
            f(&api).map_err(|e| OverlayError::Device {
                ifname,
                reason: format!("{what}: {e}"),
            })
        })
        .await?
    }
}

fn create(
    ifname: &str,
    kind: DeviceKind,
    threads: usize,
) -> Result<(Api, Option<DeviceHandle>), String> {
    match kind {
        DeviceKind::Kernel => {
            let mut api = WGApi::<Kernel>::new(ifname).map_err(|e| e.to_string())?;
            api.create_interface().map_err(|e| e.to_string())?;
            Ok((Box::new(api), None))
        }
        DeviceKind::Userspace => {
            // defguard's own userspace constructor fixes boringtun at 4
            // threads; made here, the thread count fits the machine, and
            // defguard configures it over its UAPI socket as before.
            let config = DeviceConfig {
                n_threads: threads,
                ..DeviceConfig::default()
            };
            let device = DeviceHandle::new(ifname, config).map_err(|e| e.to_string())?;
            let api = WGApi::<Userspace>::new(ifname).map_err(|e| e.to_string())?;
            Ok((Box::new(api), Some(device)))
        }
    }
}

/// Runs `f` on a blocking thread; gives up waiting after [`CALL_TIMEOUT`]
/// (the thread may stay stuck on a dead socket, the node does not).
async fn blocking<T, F>(ifname: &str, call: &'static str, f: F) -> Result<T, OverlayError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    match tokio::time::timeout(CALL_TIMEOUT, tokio::task::spawn_blocking(f)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(OverlayError::Device {
            ifname: ifname.to_string(),
            reason: format!("{call}: {e}"),
        }),
        Err(_) => Err(OverlayError::Timeout {
            ifname: ifname.to_string(),
            call,
            secs: CALL_TIMEOUT.as_secs(),
        }),
    }
}
