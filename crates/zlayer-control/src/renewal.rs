//! Renewing this node's certificate before it expires: once it has less than
//! `renew_before` left, the node sends the leader a CSR for a fresh key over
//! mTLS (`Member::renew_certificate`), saves what comes back, and presents it
//! on every connection from then on. Checked shortly after start and hourly;
//! a failed renewal is logged and retried after 10 s.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::control::Control;

/// Node certificates live 365 days; renewal starts with a third left.
pub const DEFAULT_RENEW_BEFORE: Duration = Duration::from_secs(120 * 86_400);
const FIRST_CHECK: Duration = Duration::from_secs(3);
const CHECK_EVERY: Duration = Duration::from_secs(3600);
const RETRY_AFTER: Duration = Duration::from_secs(10);

pub(crate) async fn run(c: Arc<Control>) {
    tokio::time::sleep(FIRST_CHECK).await;
    loop {
        let wait = match renew_if_due(&c).await {
            Ok(_) => CHECK_EVERY,
            Err(e) => {
                tracing::warn!(
                    "renewing this node's certificate: {e}; retrying in {RETRY_AFTER:?}"
                );
                RETRY_AFTER
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// Renews when the certificate has less than `renew_before` left; says
/// whether it did.
pub(crate) async fn renew_if_due(c: &Control) -> Result<bool, String> {
    let current = c.identity.lock().map_err(|e| e.to_string())?.clone();
    if time_left(&current.cert_pem, SystemTime::now())? >= c.renew_before {
        return Ok(false);
    }
    let renewed = c
        .member
        .renew_certificate(&c.node.name, &current)
        .await
        .map_err(|e| e.to_string())?;
    c.files.save_renewed(&renewed).map_err(|e| e.to_string())?;
    c.member.present(&renewed).map_err(|e| e.to_string())?;
    let left = time_left(&renewed.cert_pem, SystemTime::now())?;
    tracing::info!(
        "renewed this node's certificate; the new one is valid for {} more days",
        left.as_secs() / 86_400
    );
    *c.identity.lock().map_err(|e| e.to_string())? = renewed;
    Ok(true)
}

/// How long `cert_pem` stays valid after `now` (zero once expired).
pub(crate) fn time_left(cert_pem: &str, now: SystemTime) -> Result<Duration, String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|e| format!("this node's certificate is not PEM: {e}"))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| format!("this node's certificate: {e}"))?;
    let not_after = cert.validity().not_after.timestamp();
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    Ok(Duration::from_secs(
        not_after.saturating_sub(now).max(0) as u64
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_certificate_has_a_year_left_and_none_once_past_its_end() {
        let ca = zlayer_state::pki::create_ca("t").unwrap();
        let id = zlayer_state::pki::bootstrap_identity(&ca, "n1", &["127.0.0.1".parse().unwrap()])
            .unwrap();
        let now = SystemTime::now();
        let left = time_left(&id.cert_pem, now).unwrap();
        assert!(
            left > Duration::from_secs(364 * 86_400) && left <= Duration::from_secs(365 * 86_400)
        );
        assert!(
            left > DEFAULT_RENEW_BEFORE,
            "a fresh certificate is not renewed"
        );
        let later = now + Duration::from_secs(366 * 86_400);
        assert_eq!(time_left(&id.cert_pem, later).unwrap(), Duration::ZERO);
        assert!(time_left("not a certificate", now).is_err());
    }
}
