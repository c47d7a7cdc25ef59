//! Checks on the mesh fields a command brings into the state: WireGuard
//! keys, endpoints, device kinds and stock peer names. Every member applies
//! them, so a manager that skips the CLI still cannot record a value that
//! would break another node's device configuration or the `wg-quick` text
//! printed for a peer.

use base64::Engine;

/// Longest peer name: one DNS label.
const NAME_MAX: usize = 63;

/// Whether `key` is a WireGuard public key: 32 bytes in canonical base64.
pub fn check_public_key(key: &str) -> Result<(), String> {
    let engine = base64::engine::general_purpose::STANDARD;
    let canonical = engine
        .decode(key)
        .ok()
        .filter(|b| b.len() == 32)
        .is_some_and(|b| engine.encode(b) == key);
    if canonical {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a WireGuard public key (44 characters of base64 for 32 bytes, as `wg pubkey` prints)",
            key.escape_debug()
        ))
    }
}

/// Whether `endpoint` is an address and UDP port (`10.0.0.1:51820`).
pub fn check_endpoint(endpoint: &str) -> Result<(), String> {
    match endpoint.parse::<std::net::SocketAddr>() {
        Ok(a) if a.port() != 0 => Ok(()),
        _ => Err(format!(
            "`{}` is not a WireGuard endpoint; write an IP and a UDP port, like 10.0.0.1:51820",
            endpoint.escape_debug()
        )),
    }
}

/// Whether `device` names a device kind a node can run.
pub fn check_device(device: &str) -> Result<(), String> {
    match device {
        "kernel" | "userspace" => Ok(()),
        other => Err(format!(
            "`{}` is not a WireGuard device kind; it is `kernel` or `userspace`",
            other.escape_debug()
        )),
    }
}

/// Whether `name` may name a stock peer: one DNS label of lowercase
/// letters, digits and `-`, so it is safe in a config comment and in DNS.
pub fn check_peer_name(name: &str) -> Result<(), String> {
    let label = !name.is_empty()
        && name.len() <= NAME_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if label {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a peer name; use 1 to {NAME_MAX} lowercase letters, digits and `-`, like `laptop-1`",
            name.escape_debug()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";

    #[test]
    fn only_canonical_32_byte_keys_pass() {
        assert_eq!(check_public_key(KEY), Ok(()));
        for bad in [
            "",
            "k",
            "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg",
            "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dh=",
            "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\nendpoint=1.2.3.4:1",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ] {
            assert!(check_public_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn endpoints_devices_and_names() {
        assert_eq!(check_endpoint("10.0.0.1:51820"), Ok(()));
        assert_eq!(check_endpoint("[fd00::1]:51820"), Ok(()));
        for bad in ["10.0.0.1", "10.0.0.1:0", "host:51820", "10.0.0.1:51820\n"] {
            assert!(check_endpoint(bad).is_err(), "{bad:?}");
        }
        assert_eq!(check_device("kernel"), Ok(()));
        assert!(check_device("tun\n").is_err());
        assert_eq!(check_peer_name("laptop-1"), Ok(()));
        for bad in ["", "-a", "a-", "Laptop", "a b", "x\nPostUp = sh", "a.b"] {
            assert!(check_peer_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_peer_name(&"a".repeat(64)).is_err());
    }
}
