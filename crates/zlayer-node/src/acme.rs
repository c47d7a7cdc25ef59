//! ACME at the node: every node's ingress gives the challenge answers the
//! cluster state holds, and the leader, when the node was started with an
//! ACME directory, obtains a certificate for each `https` host whose
//! endpoint says `tls: { acme: true }` and renews it with a third of its
//! life left. The answers and the certificates go through Raft, so the CA
//! may reach any node; the private keys are sealed there (see
//! `zlayer_state::acme`).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use zlayer_acme::{AcmeConfig, AlpnAnswer, Publish, PublishFuture};
use zlayer_control::Control;
use zlayer_spec::Protocol;
use zlayer_state::acme::{AcmeCertificate, AlpnChallenge};
use zlayer_state::Command;

/// How often the leader looks for hosts that need a certificate.
const CHECK_EVERY: Duration = Duration::from_secs(5);
/// After a failed order, a host waits this long before the next.
const RETRY_AFTER: Duration = Duration::from_secs(60);
/// A committed answer reaches every node's ingress within this (each
/// applies it on its next state change); the CA is told only then.
const SETTLE: Duration = Duration::from_millis(750);

/// Keeps this node's ingress answering what the cluster state holds.
pub fn follow_answers(control: Arc<Control>, proxy: Arc<zlayer_proxy::Proxy>) {
    tokio::spawn(async move {
        let mut changes = control.subscribe();
        let mut last = zlayer_state::acme::AcmeState::default();
        loop {
            let now = control.read(|s| s.acme.clone());
            if now.http01 != last.http01 || now.alpn01 != last.alpn01 {
                let http01: HashMap<String, String> = now.http01.clone().into_iter().collect();
                let alpn01 = now
                    .alpn01
                    .iter()
                    .filter_map(|(host, c)| {
                        zlayer_proxy::acme_challenge_key(
                            c.cert_pem.as_bytes(),
                            c.key_pem.as_bytes(),
                            host,
                        )
                        .map_err(|e| tracing::warn!("ACME answer for {host}: {e}"))
                        .ok()
                        .map(|k| (host.clone(), Arc::new(k)))
                    })
                    .collect();
                proxy.set_acme_answers(http01, alpn01);
                last = now;
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    });
}

/// The hosts of `https` endpoints that ask for an ACME certificate.
fn acme_hosts(control: &Control) -> BTreeSet<String> {
    let mut hosts = BTreeSet::new();
    for rev in control.specs() {
        let Ok(spec) = &rev.parsed else { continue };
        for svc in spec.services.values() {
            for ep in svc.endpoints.iter().filter(|e| e.is_ingress_route()) {
                let wants =
                    ep.protocol == Protocol::Https && ep.tls.as_ref().is_some_and(|t| t.acme);
                if let (true, Some(host)) = (wants, &ep.host) {
                    hosts.insert(host.to_ascii_lowercase());
                }
            }
        }
    }
    hosts
}

/// Runs the leader's side: obtain, renew, share.
pub fn manage(control: Arc<Control>, cfg: AcmeConfig) {
    tokio::spawn(async move {
        let mut account: Option<zlayer_acme::Account> = None;
        let mut failed: HashMap<String, tokio::time::Instant> = HashMap::new();
        loop {
            tokio::time::sleep(CHECK_EVERY).await;
            if control.member.leader().map(|l| l.0) != Some(control.member.id) {
                continue;
            }
            let now = zlayer_state::now_ms();
            let due: Vec<String> = {
                let certs = control.read(|s| s.acme.certs.clone());
                acme_hosts(&control)
                    .into_iter()
                    .filter(|h| certs.get(h).is_none_or(|c| c.renewal_due(now)))
                    .filter(|h| failed.get(h).is_none_or(|at| at.elapsed() >= RETRY_AFTER))
                    .collect()
            };
            for host in due {
                match obtain_one(&control, &cfg, &mut account, &host).await {
                    Ok(()) => {
                        failed.remove(&host);
                    }
                    Err(e) => {
                        tracing::warn!(
                            "ACME certificate for {host}: {e}; trying again in {RETRY_AFTER:?}"
                        );
                        // A broken account (a restarted CA, a revoked key) is made anew.
                        account = None;
                        failed.insert(host, tokio::time::Instant::now());
                    }
                }
            }
        }
    });
}

async fn obtain_one(
    control: &Arc<Control>,
    cfg: &AcmeConfig,
    account: &mut Option<zlayer_acme::Account>,
    host: &str,
) -> Result<(), String> {
    let seal = control.member.acme_seal_key()?;
    if account.is_none() {
        *account = Some(zlayer_acme::account(cfg).await.map_err(|e| e.to_string())?);
    }
    let Some(acct) = account.as_ref() else {
        return Err("no ACME account".into());
    };
    tracing::info!(
        "ACME: ordering a certificate for {host} ({:?})",
        cfg.challenge
    );
    let publisher = StatePublisher(control.clone());
    let issued = zlayer_acme::obtain(acct, cfg.challenge, host, &publisher)
        .await
        .map_err(|e| e.to_string())?;
    let cert = AcmeCertificate {
        cert_pem: issued.cert_pem,
        sealed_key: seal
            .seal(host, issued.key_pem.as_bytes())
            .map_err(|e| e.to_string())?,
        not_before_ms: issued.not_before_ms,
        not_after_ms: issued.not_after_ms,
    };
    control
        .write(Command::AcmeCertificate {
            host: host.to_string(),
            cert: Some(cert),
        })
        .await
        .map_err(|e| format!("storing it in the cluster state: {e}"))?;
    tracing::info!("ACME: certificate for {host} obtained and shared with every node");
    Ok(())
}

/// Challenge answers go to the cluster state, for every node's ingress.
struct StatePublisher(Arc<Control>);

impl StatePublisher {
    async fn commit(&self, cmd: Command, settle: bool) -> Result<(), String> {
        self.0.write(cmd).await.map_err(|e| e.to_string())?;
        if settle {
            tokio::time::sleep(SETTLE).await;
        }
        Ok(())
    }
}

impl Publish for StatePublisher {
    fn http01(&self, token: &str, key_authorization: Option<&str>) -> PublishFuture<'_> {
        let cmd = Command::AcmeHttp01 {
            token: token.to_string(),
            key_authorization: key_authorization.map(str::to_string),
        };
        let settle = key_authorization.is_some();
        Box::pin(self.commit(cmd, settle))
    }

    fn alpn01(&self, host: &str, answer: Option<AlpnAnswer>) -> PublishFuture<'_> {
        let settle = answer.is_some();
        let cmd = Command::AcmeAlpn01 {
            host: host.to_string(),
            challenge: answer.map(|a| AlpnChallenge {
                cert_pem: a.cert_pem,
                key_pem: a.key_pem,
            }),
        };
        Box::pin(self.commit(cmd, settle))
    }
}
