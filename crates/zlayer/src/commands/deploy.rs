//! `up`, `down`, `ps`, `rollouts` and `events`: sending a spec to the node,
//! waiting for its replicas, and showing what runs.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use zlayer_api::{
    ApplyRequest, ApplyResponse, ReplicaPhase, ReplicaView, RolloutPhase, RolloutView,
};

use crate::cli::Format;
use crate::output::render;

pub fn up(
    data: &Path,
    registries: &zlayer_image::RegistryOptions,
    file: &Path,
    detach: bool,
    timeout: u64,
) -> Result<i32> {
    let text =
        std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    up_text(
        data,
        registries,
        file.display().to_string(),
        text,
        detach,
        timeout,
    )
}

/// `up` of a spec already read: `name` is what its errors call it.
pub fn up_text(
    data: &Path,
    registries: &zlayer_image::RegistryOptions,
    name: String,
    text: String,
    detach: bool,
    timeout: u64,
) -> Result<i32> {
    let spec = match zlayer_spec::parse(&name, &text) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return Ok(2);
        }
    };
    super::spec::print_warnings(&name, &spec);
    let mut env = BTreeMap::new();
    for svc in spec.services.values() {
        for v in svc.env.values() {
            if let Some(var) = v.strip_prefix("$E:") {
                if let Ok(val) = std::env::var(var) {
                    env.insert(var.to_string(), val);
                }
            }
        }
    }
    let client = super::client(data);
    if !client.is_remote() {
        super::node::ensure_node(data, registries)?;
    }
    let resp = super::block_on(client.apply(&ApplyRequest {
        file: name,
        text,
        env,
    }))?;
    println!(
        "deployment {} applied ({})",
        resp.deployment,
        if resp.changed { "changed" } else { "unchanged" }
    );
    // A count set by `zlayer scale` holds over the spec's (it says which).
    let count = |name: &str, s: &zlayer_spec::Service| {
        resp.scaled
            .get(name)
            .copied()
            .unwrap_or_else(|| s.replica_count())
    };
    let expected: u32 = spec
        .services
        .iter()
        .filter(|(_, s)| s.rtype == zlayer_spec::ResourceType::Service)
        .map(|(name, s)| count(name, s))
        .sum();
    // A scale-down is done once the replicas beyond the count are gone.
    let fixed: Vec<(String, usize)> = spec
        .services
        .iter()
        .filter(|(_, s)| {
            s.rtype == zlayer_spec::ResourceType::Service
                && s.scale.mode == zlayer_spec::ScaleMode::Fixed
        })
        .map(|(name, s)| (name.clone(), count(name, s) as usize))
        .collect();
    if detach {
        return wait_ready(data, &resp, expected, &fixed, timeout);
    }
    foreground(data, &resp.deployment)
}

/// Waits until every service runs its applied revision on all its replicas,
/// healthy, and no fixed-size service has more replicas than it asks for;
/// fails on a failed replica or a stopped rollout.
fn wait_ready(
    data: &Path,
    resp: &ApplyResponse,
    expected: u32,
    fixed: &[(String, usize)],
    timeout: u64,
) -> Result<i32> {
    let client = super::client(data);
    let dep = resp.deployment.as_str();
    let start = Instant::now();
    let started_ms = zlayer_state::now_ms().saturating_sub(60_000);
    let mut generation = 0;
    loop {
        let ps: Vec<ReplicaView> = super::block_on(client.ps())?
            .into_iter()
            .filter(|r| r.deployment == dep)
            .collect();
        let current = |r: &ReplicaView| resp.revisions.get(&r.service) == Some(&r.revision);
        let up = ps
            .iter()
            .filter(|r| r.is_ready() && !r.surge && current(r))
            .count() as u32;
        if let Some(bad) = ps.iter().find(|r| r.state == ReplicaPhase::Failed) {
            bail!("{}/{} failed: {}", bad.service, bad.replica, bad.message);
        }
        // Each node replaces its own replicas, and reports how it goes.
        let rollouts = super::block_on(client.rollouts())?;
        let many_nodes = rollouts.iter().any(|r| r.node != rollouts[0].node);
        let mine = rollouts
            .iter()
            .filter(|r| r.deployment == dep && resp.revisions.get(&r.service) == Some(&r.revision));
        let mut rolling = 0;
        for r in mine {
            let on = if many_nodes {
                format!(" on {}", r.node)
            } else {
                String::new()
            };
            match r.state {
                RolloutPhase::Failed => bail!("{dep}/{}: rollout{on} {}", r.service, r.message),
                RolloutPhase::Done => {}
                RolloutPhase::Rolling => rolling += 1,
            }
        }
        if let Some(now) = replaced_by(data, resp)? {
            let failed = super::block_on(client.events())?
                .into_iter()
                .rfind(|e| {
                    e.deployment == dep && e.kind == "rollout-failed" && e.time_ms >= started_ms
                })
                .map_or_else(String::new, |e| {
                    format!(": {}/{}: {}", e.deployment, e.service, e.message)
                });
            bail!(
                "{dep}: revision {} is no longer current, revision {now} is{failed}",
                resp.revision
            );
        }
        let surplus = fixed.iter().any(|(name, count)| {
            ps.iter().filter(|r| &r.service == name && !r.surge).count() > *count
        });
        if up >= expected && rolling == 0 && !surplus {
            println!(
                "{dep}: {up}/{expected} replicas healthy in {:.2}s",
                start.elapsed().as_secs_f64()
            );
            return Ok(0);
        }
        if start.elapsed() > Duration::from_secs(timeout) {
            let why: Vec<String> = ps
                .iter()
                .filter(|r| !r.is_ready())
                .map(|r| {
                    format!(
                        "{}/{}: {} {} {}",
                        r.service, r.replica, r.state, r.health, r.message
                    )
                })
                .collect();
            bail!(
                "{dep}: only {up}/{expected} replicas healthy after {timeout}s:\n  {}",
                why.join("\n  ")
            );
        }
        // Wakes after the node's next reconcile round instead of polling.
        generation = super::block_on(client.watch(generation))?;
    }
}

/// The deployment's current revision, when a newer one replaced the one
/// `resp` applied (a rollback or another `up`: each commits a new, higher
/// revision).
fn replaced_by(data: &Path, resp: &ApplyResponse) -> Result<Option<u64>> {
    if resp.revision == 0 {
        return Ok(None);
    }
    let req = zlayer_api::ClusterRequest::History(resp.deployment.clone());
    let now = match super::cluster(data, req) {
        Ok(zlayer_api::ClusterReply::History(rows)) => {
            rows.iter().find(|r| r.current).map_or(0, |r| r.revision)
        }
        _ => return Ok(None),
    };
    Ok(superseded(resp.revision, now))
}

/// `current` when it replaced `applied`. A lower one is this node's view
/// still behind the commit (a follower applies a moment after the
/// leader), not a replacement: the wait goes on.
fn superseded(applied: u64, current: u64) -> Option<u64> {
    (current > applied).then_some(current)
}

/// Streams status changes and logs until Ctrl-C, then takes the deployment down.
fn foreground(data: &Path, dep: &str) -> Result<i32> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = super::client(data);
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut logs: HashMap<String, zlayer_runtime::Follower> = HashMap::new();
    let stop = rt.block_on(async {
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        loop {
            tokio::select! {
                _ = &mut ctrl_c => return Ok::<_, anyhow::Error>(()),
                _ = tokio::time::sleep(Duration::from_millis(300)) => {}
            }
            let ps = client.ps().await?;
            for r in ps.iter().filter(|r| r.deployment == dep) {
                let key = format!("{}/{}", r.service, r.replica);
                let status = format!(
                    "{} {} restarts={} {}",
                    r.state, r.health, r.restarts, r.message
                );
                if seen.get(&key) != Some(&status) {
                    println!("[{key}] {status}");
                    seen.insert(key.clone(), status);
                }
                if let Ok(locs) = client.locate(&key).await {
                    for l in locs {
                        logs.entry(l.log_path.clone())
                            .or_insert_with(|| zlayer_runtime::Follower::open(l.log_path.into()))
                            .poll(&mut |line| print!("{key} | {line}"));
                    }
                }
            }
        }
    });
    stop?;
    println!("stopping {dep}...");
    rt.block_on(client.down(dep))?;
    println!("{dep} stopped");
    Ok(0)
}

pub fn down(data: &Path, dep: &str) -> Result<i32> {
    super::block_on(super::client(data).down(dep))?;
    println!("{dep} removed");
    Ok(0)
}

/// `zlayer rollout history|undo`.
pub fn rollout(data: &Path, command: crate::cli::RolloutCommand) -> Result<i32> {
    use zlayer_api::{ClusterReply, ClusterRequest};
    match command {
        crate::cli::RolloutCommand::History { deployment, output } => {
            let ClusterReply::History(rows) =
                super::cluster(data, ClusterRequest::History(deployment))?
            else {
                bail!("the node answered `rollout history` with something else");
            };
            let now = zlayer_state::now_ms();
            render(
                output,
                &rows,
                &["REVISION", "APPLIED", "FILE", "IMAGES"],
                |r| {
                    vec![
                        format!(
                            "{}{}",
                            r.revision,
                            if r.current { " (current)" } else { "" }
                        ),
                        format!("{} ago", age(now.saturating_sub(r.applied_ms) / 1000)),
                        r.file.clone(),
                        r.images.join(" "),
                    ]
                },
            )?;
        }
        crate::cli::RolloutCommand::Undo { deployment, to } => {
            let reply = super::cluster(
                data,
                ClusterRequest::Undo {
                    deployment: deployment.clone(),
                    to,
                },
            )?;
            let ClusterReply::Revision(r) = reply else {
                bail!("the node answered `rollout undo` with something else");
            };
            println!("{deployment}: revision {r} applied (`zlayer rollouts` follows it)");
        }
    }
    Ok(0)
}

pub(super) fn age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s => format!("{}h", s / 3600),
    }
}

pub fn ps(data: &Path, output: Format) -> Result<i32> {
    let mut rows = super::block_on(super::client(data).ps())?;
    rows.sort_by(|a, b| {
        (&a.deployment, &a.service, a.replica).cmp(&(&b.deployment, &b.service, b.replica))
    });
    render(
        output,
        &rows,
        &[
            "SERVICE", "REPLICA", "NODE", "STATE", "HEALTH", "RESTARTS", "IP", "AGE", "MESSAGE",
        ],
        |r| {
            vec![
                format!("{}/{}", r.deployment, r.service),
                // A rollout's replacement shows beside the replica it replaces.
                format!("{}{}", r.replica, if r.surge { "+" } else { "" }),
                r.node.clone(),
                r.state.to_string(),
                r.health.to_string(),
                r.restarts.to_string(),
                r.ip.clone(),
                age(r.age_secs),
                r.message.clone(),
            ]
        },
    )?;
    Ok(0)
}

pub fn rollouts(data: &Path, output: Format) -> Result<i32> {
    let rows = summarize_rollouts(super::block_on(super::client(data).rollouts())?);
    render(
        output,
        &rows,
        &["SERVICE", "REVISION", "STATE", "NODES", "AGE", "MESSAGE"],
        |r| {
            vec![
                format!("{}/{}", r.deployment, r.service),
                r.revision.clone(),
                r.state.to_string(),
                r.node.clone(),
                age(r.age_secs),
                r.message.clone(),
            ]
        },
    )?;
    Ok(0)
}

/// One row per service and revision from the nodes' own rollouts: the
/// worst state any node is in (failed, then rolling, then done), the nodes
/// in it, and the first such node's message.
fn summarize_rollouts(rows: Vec<RolloutView>) -> Vec<RolloutView> {
    let mut by_service: BTreeMap<(String, String, String), Vec<RolloutView>> = BTreeMap::new();
    for r in rows {
        let key = (r.deployment.clone(), r.service.clone(), r.revision.clone());
        by_service.entry(key).or_default().push(r);
    }
    by_service
        .into_values()
        .filter_map(|mut group| {
            group.sort_by(|a, b| a.node.cmp(&b.node));
            let worst = group.iter().map(|r| r.state).max()?;
            let nodes: Vec<&str> = group
                .iter()
                .filter(|r| r.state == worst)
                .map(|r| r.node.as_str())
                .collect();
            let node = nodes.join(",");
            let age_secs = group.iter().map(|r| r.age_secs).max().unwrap_or(0);
            let mut first = group.into_iter().find(|r| r.state == worst)?;
            first.node = node;
            first.age_secs = age_secs;
            Some(first)
        })
        .collect()
}

/// `zlayer events`: every node's recent events; with `--follow`, new ones
/// as they come (asked for every second, each printed once).
pub fn events(data: &Path, output: Format, follow: bool) -> Result<i32> {
    let client = super::client(data);
    let rows = super::block_on(client.events())?;
    if !follow {
        render(output, &rows, EVENT_COLUMNS, event_cells)?;
        return Ok(0);
    }
    let mut seen = std::collections::HashSet::new();
    if output == Format::Table {
        println!("{}", EVENT_COLUMNS.join("  "));
    }
    let mut rows = rows;
    loop {
        for e in &rows {
            if seen.insert(serde_json::to_string(e)?) {
                match output {
                    Format::Table => println!("{}", event_cells(e).join("  ")),
                    _ => println!("{}", serde_json::to_string(e)?),
                }
            }
        }
        // Each node keeps its last 1000: what is no longer listed will not come back.
        if seen.len() > 50_000 {
            seen = rows
                .iter()
                .filter_map(|e| serde_json::to_string(e).ok())
                .collect();
        }
        std::io::Write::flush(&mut std::io::stdout())?;
        std::thread::sleep(std::time::Duration::from_secs(1));
        rows = super::block_on(client.events())?;
    }
}

const EVENT_COLUMNS: &[&str] = &["TIME", "NODE", "SERVICE", "REPLICA", "KIND", "MESSAGE"];

fn event_cells(e: &zlayer_api::Event) -> Vec<String> {
    vec![
        zlayer_spec::format_utc(e.time_ms),
        e.node.clone(),
        format!("{}/{}", e.deployment, e.service),
        e.replica.to_string(),
        e.kind.clone(),
        e.message.clone(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(node: &str, state: RolloutPhase, message: &str) -> RolloutView {
        RolloutView {
            deployment: "d".into(),
            service: "web".into(),
            node: node.into(),
            revision: "r2".into(),
            state,
            message: message.into(),
            age_secs: 1,
        }
    }

    #[test]
    fn a_rollout_stopped_on_one_node_is_the_services_state() {
        let rows = summarize_rollouts(vec![
            on("n1", RolloutPhase::Done, ""),
            on("n3", RolloutPhase::Failed, "stopped: n3's reason"),
            on("n2", RolloutPhase::Rolling, ""),
        ]);
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (
                rows[0].state,
                rows[0].node.as_str(),
                rows[0].message.as_str()
            ),
            (RolloutPhase::Failed, "n3", "stopped: n3's reason")
        );
    }

    #[test]
    fn a_rollout_done_everywhere_lists_every_node() {
        let mut old = on("n2", RolloutPhase::Done, "");
        old.revision = "r1".into();
        let rows = summarize_rollouts(vec![
            on("n2", RolloutPhase::Done, ""),
            on("n1", RolloutPhase::Done, ""),
            old,
        ]);
        let got: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.revision.as_str(), r.node.as_str()))
            .collect();
        assert_eq!(got, vec![("r1", "n2"), ("r2", "n1,n2")]);
    }

    #[test]
    fn a_view_behind_the_commit_is_not_a_replacement() {
        // `up -d` on a follower: revision 2 committed, its state still at 1.
        assert_eq!(superseded(2, 1), None);
        assert_eq!(superseded(2, 2), None);
        assert_eq!(superseded(2, 3), Some(3), "a rollback or another up");
    }
}
