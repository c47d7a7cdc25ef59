//! ACME at the node: every node's ingress gives the challenge answers the
//! cluster state holds, and the leader, when the node was started with an
//! ACME directory, obtains a certificate for each `https` host whose
//! endpoint says `tls: { acme: true }` and renews it with a third of its
//! life left. The answers and the certificates go through Raft, so the CA
//! may reach any node; the private keys are sealed there (see
//! `zlayer_state::acme`). So is the account: every leader orders as the
//! one account the cluster made, as a CA's rate limits on new accounts
//! expect. A TLS-ALPN-01 answer is only a digest in the state: each node
//! signs its own challenge certificate over it, with a key that never
//! leaves its memory.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use zlayer_acme::{AcmeConfig, Publish, PublishFuture};
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
                        alpn_certificate(host, c)
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

/// This node's own TLS-ALPN-01 certificate over the digest the state holds.
fn alpn_certificate(host: &str, c: &AlpnChallenge) -> Result<zlayer_proxy::CertifiedKey, String> {
    let digest = base64::engine::general_purpose::STANDARD
        .decode(&c.digest_b64)
        .map_err(|e| format!("the digest is not base64: {e}"))?;
    if digest.len() != 32 {
        return Err(format!(
            "the digest has {} bytes, not SHA-256's 32 (an answer from an older version?)",
            digest.len()
        ));
    }
    let answer = zlayer_acme::alpn_answer(host, &digest).map_err(|e| e.to_string())?;
    zlayer_proxy::acme_challenge_key(answer.cert_pem.as_bytes(), answer.key_pem.as_bytes(), host)
        .map_err(|e| e.to_string())
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
        let mut account = AccountSlot::default();
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
                        account.failed();
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
    account: &mut AccountSlot,
    host: &str,
) -> Result<(), String> {
    let seal = control.member.acme_seal_key()?;
    let acct = account.get(control, cfg, &seal).await?;
    tracing::info!(
        "ACME: ordering a certificate for {host} ({:?})",
        cfg.challenge
    );
    let publisher = StatePublisher(control.clone());
    let issued = zlayer_acme::obtain(&acct, cfg.challenge, host, &publisher)
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

/// The account the leader orders with: the cluster's, from the state, or
/// one made here and stored there when the state has none that works.
#[derive(Default)]
struct AccountSlot {
    held: Option<(zlayer_acme::Account, bool)>,
    /// The stored account failed an order: make a new one next time (a
    /// CA that forgot it, a deactivated key).
    make_new: bool,
}

impl AccountSlot {
    async fn get(
        &mut self,
        control: &Control,
        cfg: &AcmeConfig,
        seal: &zlayer_state::acme::SealKey,
    ) -> Result<zlayer_acme::Account, String> {
        if let Some((acct, _)) = &self.held {
            return Ok(acct.clone());
        }
        let owner = zlayer_state::acme::account_owner(&cfg.directory);
        let stored = control.read(|s| s.acme.accounts.get(&cfg.directory).cloned());
        if let (Some(sealed), false) = (stored, self.make_new) {
            let restored = match seal.open(&owner, &sealed) {
                Ok(json) => zlayer_acme::restore_account(cfg, &String::from_utf8_lossy(&json))
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match restored {
                Ok(acct) => {
                    tracing::info!("ACME: using the cluster's account at {}", cfg.directory);
                    self.held = Some((acct.clone(), true));
                    return Ok(acct);
                }
                Err(e) => tracing::warn!(
                    "ACME: the cluster's account at {} does not open ({e}); making a new one",
                    cfg.directory
                ),
            }
        }
        let (acct, credentials) = zlayer_acme::create_account(cfg)
            .await
            .map_err(|e| e.to_string())?;
        let sealed = seal
            .seal(&owner, credentials.as_bytes())
            .map_err(|e| e.to_string())?;
        control
            .write(Command::AcmeAccount {
                directory: cfg.directory.clone(),
                sealed: Some(sealed),
            })
            .await
            .map_err(|e| format!("storing the ACME account in the cluster state: {e}"))?;
        tracing::info!(
            "ACME: created an account at {} for the cluster",
            cfg.directory
        );
        self.held = Some((acct.clone(), false));
        self.make_new = false;
        Ok(acct)
    }

    /// An order failed: the account is looked up again before the next,
    /// and a stored one that failed is replaced.
    fn failed(&mut self) {
        if let Some((_, restored)) = self.held.take() {
            self.make_new = restored;
        }
    }
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

    fn alpn01(&self, host: &str, digest: Option<&[u8]>) -> PublishFuture<'_> {
        let settle = digest.is_some();
        Box::pin(self.commit(alpn01_command(host, digest), settle))
    }
}

/// What a TLS-ALPN-01 answer commits: the host and the digest, nothing secret.
fn alpn01_command(host: &str, digest: Option<&[u8]>) -> Command {
    Command::AcmeAlpn01 {
        host: host.to_string(),
        challenge: digest.map(|d| AlpnChallenge {
            digest_b64: base64::engine::general_purpose::STANDARD.encode(d),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The attack: whoever reads a Raft log or a snapshot (a backup, a
    // stolen disk) must find no private key in it, a challenge's included.
    #[test]
    fn a_tls_alpn_01_answer_commits_no_key_and_each_node_signs_its_own() {
        let digest = [9u8; 32];
        let cmd = alpn01_command("shop.test", Some(&digest));
        let logged = serde_json::to_string(&cmd).unwrap();
        assert!(!logged.contains("PRIVATE KEY"), "{logged}");
        let Command::AcmeAlpn01 {
            challenge: Some(c), ..
        } = cmd
        else {
            panic!("not an answer: {logged}");
        };
        let here = alpn_certificate("shop.test", &c).unwrap();
        let there = alpn_certificate("shop.test", &c).unwrap();
        assert_ne!(here.cert, there.cert, "each node makes its own certificate");
    }

    #[test]
    fn an_answer_in_the_old_form_is_refused_with_why() {
        let old: AlpnChallenge = serde_json::from_str(r#"{"cert_pem":"C","key_pem":"K"}"#).unwrap();
        let e = alpn_certificate("shop.test", &old).err().unwrap();
        assert!(e.contains("not SHA-256's 32"), "{e}");
    }
}
