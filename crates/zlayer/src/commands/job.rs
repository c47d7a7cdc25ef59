//! `zlayer job`: jobs' tasks across the cluster (`ls`), their output
//! (`logs`), and one service of a spec file run as a job now (`run`).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde::Serialize;
use zlayer_api::{ReplicaPhase, ReplicaView};
use zlayer_spec::ResourceType;

use crate::cli::JobCommand;
use crate::output::render;

pub fn job(
    data: &Path,
    registries: &zlayer_image::RegistryOptions,
    command: JobCommand,
) -> Result<i32> {
    match command {
        JobCommand::Ls { output } => {
            let mut jobs = summaries(super::block_on(super::client(data).ps())?);
            add_usage(data, &mut jobs)?;
            render(
                output,
                &jobs,
                &[
                    "JOB",
                    "TASKS",
                    "SUCCEEDED",
                    "FAILED",
                    "RUNNING",
                    "WAITING",
                    "ATTEMPTS",
                ],
                |j| {
                    vec![
                        j.job.clone(),
                        j.tasks.to_string(),
                        j.succeeded.to_string(),
                        j.failed.to_string(),
                        j.running.to_string(),
                        j.waiting.to_string(),
                        j.attempts.to_string(),
                    ]
                },
            )?;
            Ok(0)
        }
        JobCommand::Logs(args) => super::logs::logs(data, &args),
        JobCommand::Run {
            file,
            service,
            timeout,
        } => run(data, registries, &file, &service, timeout),
    }
}

/// One job as `job ls` shows it, with its tasks (`-o json|yaml`).
#[derive(Serialize)]
struct JobSummary {
    job: String,
    tasks: usize,
    succeeded: usize,
    failed: usize,
    running: usize,
    /// Not started yet, or between attempts.
    waiting: usize,
    /// Attempts started so far, over all tasks.
    attempts: u32,
    #[serde(rename = "task_list")]
    list: Vec<ReplicaView>,
    /// What its finished attempts used, summed (the cluster keeps the
    /// newest records; see `GET /v1/usage`).
    usage: zlayer_model::UsageTotals,
    /// Each finished attempt's metering record, oldest first.
    runs: Vec<zlayer_model::UsageRecord>,
}

/// Each job's metering records and their sum.
fn add_usage(data: &Path, jobs: &mut [JobSummary]) -> Result<()> {
    if jobs.is_empty() {
        return Ok(());
    }
    let req = zlayer_api::ClusterRequest::Usage(Default::default());
    let zlayer_api::ClusterReply::Usage(records) = super::cluster(data, req)? else {
        bail!("the node answered a usage request with something else");
    };
    for j in jobs.iter_mut() {
        j.runs = records
            .iter()
            .filter(|r| format!("{}/{}", r.deployment, r.service) == j.job)
            .cloned()
            .collect();
        for r in &j.runs {
            j.usage.add(r);
        }
        j.usage.deployment = j
            .list
            .first()
            .map(|t| t.deployment.clone())
            .unwrap_or_default();
        j.usage.service = j
            .list
            .first()
            .map(|t| t.service.clone())
            .unwrap_or_default();
    }
    Ok(())
}

/// Where one task stands.
#[derive(PartialEq, Eq)]
enum TaskStand {
    Succeeded,
    Failed,
    Running,
    Waiting,
}

fn stand(t: &ReplicaView) -> TaskStand {
    match t.state {
        ReplicaPhase::Failed => TaskStand::Failed,
        ReplicaPhase::Running => TaskStand::Running,
        _ if t.succeeded => TaskStand::Succeeded,
        _ => TaskStand::Waiting,
    }
}

fn summaries(rows: Vec<ReplicaView>) -> Vec<JobSummary> {
    let mut by_job: BTreeMap<String, Vec<ReplicaView>> = BTreeMap::new();
    for r in rows.into_iter().filter(|r| r.kind == "job" && !r.surge) {
        by_job
            .entry(format!("{}/{}", r.deployment, r.service))
            .or_default()
            .push(r);
    }
    by_job
        .into_iter()
        .map(|(job, mut list)| {
            list.sort_by_key(|t| t.replica);
            let count = |s: TaskStand| list.iter().filter(|t| stand(t) == s).count();
            JobSummary {
                job,
                tasks: list.len(),
                succeeded: count(TaskStand::Succeeded),
                failed: count(TaskStand::Failed),
                running: count(TaskStand::Running),
                waiting: count(TaskStand::Waiting),
                attempts: list
                    .iter()
                    .filter(|t| !matches!(t.state, ReplicaPhase::Pending | ReplicaPhase::Assigned))
                    .map(|t| t.restarts + 1)
                    .sum(),
                list,
                usage: Default::default(),
                runs: Vec::new(),
            }
        })
        .collect()
}

/// Applies SERVICE of `file` alone as a job of a deployment of its own,
/// then waits until every task is done.
fn run(
    data: &Path,
    registries: &zlayer_image::RegistryOptions,
    file: &Path,
    service: &str,
    timeout: u64,
) -> Result<i32> {
    let name = file.display().to_string();
    let text = std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    let mut spec = match zlayer_spec::parse(&name, &text) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return Ok(2);
        }
    };
    let Some(mut svc) = spec.services.remove(service) else {
        let known: Vec<&String> = spec.services.keys().collect();
        bail!("{name}: no service `{service}` (it has: {known:?})");
    };
    // A job of its own: no schedule, nothing published, nothing to wait for.
    svc.rtype = ResourceType::Job;
    svc.schedule = None;
    svc.depends.clear();
    for ep in &mut svc.endpoints {
        ep.host_port = None;
        ep.host = None;
    }
    let tasks = svc.replica_count() as usize;
    let stamp = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    );
    let mut deployment = format!("{}-{service}", spec.deployment);
    deployment.truncate(62 - stamp.len());
    spec.deployment = format!("{}-{stamp}", deployment.trim_end_matches('-'));
    spec.services = BTreeMap::from([(service.to_string(), svc)]);
    let text = serde_saphyr::to_string(&spec)?;
    let rc = super::deploy::up_text(
        data,
        registries,
        format!("{name} ({service})"),
        text,
        true,
        60,
    )?;
    if rc != 0 {
        return Ok(rc);
    }
    let job = format!("{}/{service}", spec.deployment);
    println!(
        "job {job}: {tasks} task(s); `zlayer job ls` and `zlayer job logs {service}` follow it"
    );
    let end = Instant::now() + Duration::from_secs(timeout);
    loop {
        let rows = super::block_on(super::client(data).ps())?;
        if let Some(j) = summaries(rows).into_iter().find(|j| j.job == job) {
            if j.tasks >= tasks && j.succeeded + j.failed == j.tasks {
                for t in &j.list {
                    println!(
                        "  task {} on {}: {} {}",
                        t.replica, t.node, t.state, t.message
                    );
                }
                println!("job {job}: {} succeeded, {} failed", j.succeeded, j.failed);
                return Ok(if j.failed == 0 { 0 } else { 1 });
            }
        }
        if Instant::now() > end {
            eprintln!("job {job} still runs after {timeout} s; `zlayer job ls` follows it");
            return Ok(124);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
