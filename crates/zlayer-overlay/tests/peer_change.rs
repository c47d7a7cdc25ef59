//! A peer whose record changes (its endpoint appears after its key, as
//! when a node joins and then publishes where it listens) is set anew on a
//! real userspace device. boringtun cannot change a peer in place: before
//! the fix the device's only thread panicked and the node's mesh stopped
//! (every later device call timed out). Needs root and /dev/net/tun; the
//! TUN device lives only while the test runs.

use std::net::Ipv4Addr;

use zlayer_overlay::{DeviceKind, Mesh, MeshConfig, PeerConfig, PrivateKey};

fn root_with_tun() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    root && std::path::Path::new("/dev/net/tun").exists()
}

/// The body runs on a thread of its own: a device whose thread died
/// hangs when dropped, and that must fail this test, not hang it.
#[test]
fn a_changed_peer_is_set_anew_and_the_device_keeps_answering() {
    if !root_with_tun() {
        eprintln!("skipped: needs root and /dev/net/tun");
        return;
    }
    let (done, outcome) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(change_a_peer());
        let _ = done.send(());
    });
    outcome
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the peer change failed or hung the device");
}

async fn change_a_peer() {
    let ifname = format!("zlwgt{:08x}", std::process::id());
    let mesh = Mesh::start(MeshConfig {
        ifname: ifname.clone(),
        listen_port: 0,
        key: PrivateKey::generate(),
        address: Ipv4Addr::new(10, 251, 0, 1),
        mtu: zlayer_overlay::DEFAULT_MTU,
        only: Some(DeviceKind::Userspace),
        threads: 1,
    })
    .await
    .expect("userspace device");
    let other = PrivateKey::generate().public_base64();
    let mut peer = PeerConfig {
        name: "n2".into(),
        public_key: other.clone(),
        endpoint: None,
        allowed: vec![(Ipv4Addr::new(10, 251, 1, 0), 24)],
        keepalive: None,
    };
    mesh.sync(std::slice::from_ref(&peer))
        .await
        .expect("first set");
    peer.endpoint = Some("127.0.0.1:51999".parse().unwrap());
    peer.allowed.push((Ipv4Addr::new(10, 251, 2, 0), 24));
    mesh.sync(std::slice::from_ref(&peer))
        .await
        .expect("changed peer");
    let status = mesh.status().await.expect("the device still answers");
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].public_key, other);
    assert_eq!(status[0].endpoint, peer.endpoint);
    assert_eq!(status[0].allowed_ips.len(), 2, "{status:?}");
}
