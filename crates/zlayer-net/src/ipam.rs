//! Address allocation from the node's CIDR: the gateway takes the first
//! host address, containers the lowest free one after it. Pure: the caller
//! keeps the allocations (in its state store) and passes them in.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::str::FromStr;

use crate::error::NetError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl FromStr for Cidr {
    type Err = NetError;
    fn from_str(s: &str) -> Result<Self, NetError> {
        let bad = || NetError::Cidr(s.into());
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&prefix) {
            return Err(bad());
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Cidr {
            network: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        })
    }
}

impl Cidr {
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }
    fn broadcast(&self) -> u32 {
        u32::from(self.network) | (u32::MAX >> self.prefix)
    }
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix);
        u32::from(ip) & mask == u32::from(self.network)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The lowest free container address in `cidr`, skipping the gateway.
pub fn allocate(cidr: &Cidr, used: &HashSet<Ipv4Addr>) -> Result<Ipv4Addr, NetError> {
    let first = u32::from(cidr.gateway()) + 1;
    (first..cidr.broadcast())
        .map(Ipv4Addr::from)
        .find(|ip| !used.contains(ip))
        .ok_or_else(|| NetError::Exhausted(cidr.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_lowest_free_and_exhausts() {
        let c: Cidr = "10.9.0.77/29".parse().unwrap();
        assert_eq!(c.network, Ipv4Addr::new(10, 9, 0, 72));
        assert_eq!(c.gateway(), Ipv4Addr::new(10, 9, 0, 73));
        let mut used = HashSet::new();
        for want in 74..=78 {
            let ip = allocate(&c, &used).unwrap();
            assert_eq!(ip, Ipv4Addr::new(10, 9, 0, want));
            used.insert(ip);
        }
        assert!(allocate(&c, &used).is_err());
        used.remove(&Ipv4Addr::new(10, 9, 0, 75));
        assert_eq!(allocate(&c, &used).unwrap(), Ipv4Addr::new(10, 9, 0, 75));
        assert!("10.0.0.0".parse::<Cidr>().is_err());
    }
}
