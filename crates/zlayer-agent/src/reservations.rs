//! What a replica holds from its start until its record goes: an address
//! and whole GPUs by index. Two records never hold the same one.

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;

use zlayer_spec::{ResourceType, Service};

use crate::agent::Agent;
use crate::state::{Replica, ReplicaState};

impl Agent {
    /// Reserves what `r` needs before it starts: an address and its GPUs.
    pub(crate) fn reserve(
        &self,
        r: &mut Replica,
        svc: &Service,
        all: &BTreeMap<String, Replica>,
    ) -> Result<(), String> {
        let gpus = self.reserve_gpus(r, svc, all)?;
        r.ip = Some(self.reserve_ip(r, all)?);
        r.gpus = gpus;
        Ok(())
    }

    /// The GPUs `r`'s service asks for: those it already holds, else free
    /// ones no other replica holds. Never more than the node has.
    pub(crate) fn reserve_gpus(
        &self,
        r: &Replica,
        svc: &Service,
        all: &BTreeMap<String, Replica>,
    ) -> Result<Vec<u32>, String> {
        let want = svc.resources.gpu.as_ref().filter(|g| g.count > 0);
        let Some(want) = want else {
            return Ok(Vec::new());
        };
        if r.gpus.len() == want.count as usize {
            return Ok(r.gpus.clone());
        }
        let held: HashSet<u32> = all
            .values()
            .filter(|x| x.key() != r.key() && self.holds_gpus(x))
            .flat_map(|x| x.gpus.iter().copied())
            .collect();
        let total = self.gpus.gpus().len();
        let free: Vec<u32> = if want.vendor == "nvidia" {
            self.gpus
                .gpus()
                .iter()
                .map(|g| g.index)
                .filter(|i| !held.contains(i))
                .collect()
        } else {
            Vec::new()
        };
        if free.len() < want.count as usize {
            return Err(format!(
                "pending: needs {} {} GPU(s); this node has {} free of {}",
                want.count,
                want.vendor,
                free.len(),
                if want.vendor == "nvidia" { total } else { 0 }
            ));
        }
        Ok(free.into_iter().take(want.count as usize).collect())
    }

    /// A replica keeps its GPUs through restarts; one that gave up, or a job
    /// that completed, needs them no more.
    fn holds_gpus(&self, r: &Replica) -> bool {
        match r.state {
            ReplicaState::Failed => false,
            ReplicaState::Exited => {
                let done = r.last_exit.as_ref().is_some_and(|e| e.status() == 0);
                !(done
                    && self
                        .template_of(r)
                        .is_some_and(|t| t.service.rtype == ResourceType::Job))
            }
            ReplicaState::Pending | ReplicaState::Running => true,
        }
    }

    /// An address no other replica holds.
    pub(crate) fn reserve_ip(
        &self,
        r: &Replica,
        all: &BTreeMap<String, Replica>,
    ) -> Result<Ipv4Addr, String> {
        // A job task done for good let its address go (`release_reservations`).
        let used: HashSet<Ipv4Addr> = all
            .values()
            .filter(|x| x.key() != r.key())
            .filter_map(|x| x.ip)
            .collect();
        zlayer_net::allocate(&self.paths.cidr, &used).map_err(|e| e.to_string())
    }
}
