//! How big each scenario is, and the external mode's stack, as the command
//! line gave them.

use serde::Serialize;

use crate::target;

/// How big each scenario is.
#[derive(Debug, Clone, Serialize)]
pub struct Options {
    pub smoke: bool,
    /// Scenario ids to run; empty runs every one.
    pub only: Vec<String>,
    /// Length of each overhead (req/s) run.
    pub seconds: u64,
    /// wrk connections of the overhead runs.
    pub connections: u32,
    /// Length of the limiter accuracy run.
    pub accuracy_seconds: u64,
    /// Length of the token quota accuracy runs.
    pub quota_seconds: u64,
    pub soak_requests: u64,
    /// When the soak takes its reference memory reading.
    pub soak_reference_after: u64,
    pub soak_phase_seconds: u64,
    /// Fault scenario: load before the stop, Redis down, load after.
    pub fault_before: u64,
    pub fault_gap: u64,
    pub fault_after: u64,
    /// Token quota accuracy runs: how many answers the quota admits.
    pub quota_answers: u64,
    /// The external mode's stack, when not starting one.
    #[serde(skip)]
    pub external: Option<External>,
}

/// The external mode's arguments, before they are checked.
#[derive(Debug, Clone, Default)]
pub struct External {
    pub compose: bool,
    pub gateways: Vec<String>,
    pub baselines: Vec<String>,
    pub redis: Option<String>,
    pub admins: Vec<String>,
    pub redis_stop: Option<String>,
    pub redis_start: Option<String>,
    /// `--token-quota-*`.
    pub quota: target::QuotaUrls,
    /// `--limiter-pass`, `--token-quota-pass-*`.
    pub pass: target::PassUrls,
}

impl External {
    /// The stack these arguments name.
    ///
    /// # Errors
    /// Missing or inconsistent arguments, or a compose stack that is not
    /// up or whose files lack what the scenarios need.
    pub fn target(&self) -> Result<target::Target, String> {
        let mut target = if self.compose {
            if !self.gateways.is_empty() || !self.baselines.is_empty() || self.redis.is_some() {
                return Err("--stack compose takes no --gateway, --baseline or --redis".to_owned());
            }
            if self.quota.any() || self.pass.any() {
                return Err(
                    "--token-quota-*, --limiter-pass: --stack compose reads its routes from \
                            the compose files; these options go with --gateway"
                        .to_owned(),
                );
            }
            target::compose()?
        } else {
            let redis = self
                .redis
                .as_deref()
                .ok_or("--gateway needs --redis HOST:PORT")?;
            if self.baselines.is_empty() {
                return Err(
                    "--gateway needs --baseline URL (the stack's no-filter route)".to_owned(),
                );
            }
            target::from_urls(
                &self.gateways,
                &self.baselines,
                redis,
                &self.admins,
                &self.quota,
                &self.pass,
            )?
        };
        match (&self.redis_stop, &self.redis_start) {
            (Some(_), Some(_)) | (None, None) => {}
            _ => return Err("--redis-stop and --redis-start go together".to_owned()),
        }
        target.redis_stop = self.redis_stop.clone();
        target.redis_start = self.redis_start.clone();
        Ok(target)
    }
}
