//! IoT clients for a run's targets (Multi-Account Registration): the stack's own credentials in
//! another Region, or a role in another account assumed with STS AssumeRole and the target's
//! external ID. Clients are kept per container; assumed credentials are renewed once they have
//! less than [`RENEW_BEFORE`] left, which is longer than any Lambda invocation, so a call never
//! meets expired credentials.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_sdk_iot::config::{Credentials, Region};
use thingpress_aws::Class;
use thingpress_product::Target;
use tokio::sync::Mutex;

use crate::{ImportError, sdk_retry_config};

/// Assumed credentials are renewed when less than this is left (a Lambda runs 15 minutes at most).
pub const RENEW_BEFORE: Duration = Duration::from_secs(20 * 60);
/// How long assumed credentials last: STS's default, which every role allows.
const SESSION_SECONDS: i32 = 3600;

/// The IoT client of each target, built once per container.
pub struct TargetClients {
    source: Source,
    cache: Mutex<HashMap<Target, Cached>>,
}

enum Source {
    /// Clients from the shared SDK configuration; roles assumed with `sts`.
    Sdk(Box<SdkSource>),
    /// One client for every target (tests pass a mock).
    Fixed(aws_sdk_iot::Client),
}

struct SdkSource {
    config: SdkConfig,
    sts: aws_sdk_sts::Client,
    session_name: String,
}

struct Cached {
    client: aws_sdk_iot::Client,
    /// When the assumed credentials expire; `None` for the stack's own credentials.
    expires: Option<SystemTime>,
}

impl TargetClients {
    /// Clients built from `config` (its credentials are the stack's own); `session_name` names
    /// the caller in the target account's CloudTrail (`thingpress-register`, …).
    pub fn new(config: &SdkConfig, session_name: &str) -> TargetClients {
        Self::with_sts(config, aws_sdk_sts::Client::new(config), session_name)
    }

    /// Clients built from `config`, roles assumed through `sts` (tests pass a mock).
    pub fn with_sts(config: &SdkConfig, sts: aws_sdk_sts::Client, session_name: &str) -> Self {
        TargetClients {
            source: Source::Sdk(Box::new(SdkSource {
                config: config.clone(),
                sts,
                session_name: session_name.to_owned(),
            })),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Every target answered by `client` (tests).
    pub fn fixed(client: aws_sdk_iot::Client) -> TargetClients {
        TargetClients {
            source: Source::Fixed(client),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The IoT client for `target`, assuming its role first if it has one and the credentials
    /// kept for it are missing or near their end. A role that cannot be assumed is
    /// [`ImportError::TargetUnavailable`]; STS throttling or a fault is Throttled / Transient.
    pub async fn iot(&self, target: &Target) -> Result<aws_sdk_iot::Client, ImportError> {
        let SdkSource {
            config,
            sts,
            session_name,
        } = match &self.source {
            Source::Fixed(client) => return Ok(client.clone()),
            Source::Sdk(source) => source.as_ref(),
        };
        let mut cache = self.cache.lock().await;
        let now = SystemTime::now();
        if let Some(cached) = cache.get(target)
            && cached.expires.is_none_or(|at| at > now + RENEW_BEFORE)
        {
            return Ok(cached.client.clone());
        }
        let mut builder = aws_sdk_iot::config::Builder::from(config)
            .region(Region::new(target.region.clone()))
            .retry_config(sdk_retry_config());
        let mut expires = None;
        if let Some(role_arn) = &target.role_arn {
            let (credentials, expiry) =
                assume(sts, role_arn, target.external_id.as_deref(), session_name).await?;
            builder = builder.credentials_provider(credentials);
            expires = Some(expiry);
            tracing::info!(target = target.id(), role_arn, "assumed the target's role");
        }
        let client = aws_sdk_iot::Client::from_conf(builder.build());
        cache.insert(
            target.clone(),
            Cached {
                client: client.clone(),
                expires,
            },
        );
        Ok(client)
    }
}

/// STS AssumeRole: the credentials and when they expire.
async fn assume(
    sts: &aws_sdk_sts::Client,
    role_arn: &str,
    external_id: Option<&str>,
    session_name: &str,
) -> Result<(Credentials, SystemTime), ImportError> {
    let out = sts
        .assume_role()
        .role_arn(role_arn)
        .role_session_name(session_name)
        .set_external_id(external_id.map(str::to_owned))
        .duration_seconds(SESSION_SECONDS)
        .send()
        .await
        .map_err(|e| {
            let failure = thingpress_aws::classify(&e);
            let message = format!("AssumeRole {role_arn}: {}", failure.detail);
            match failure.class {
                Class::Throttled => ImportError::Throttled(message),
                Class::Transient => ImportError::Transient(message),
                Class::Rejected => ImportError::TargetUnavailable(message),
            }
        })?;
    let c = out.credentials().ok_or_else(|| {
        ImportError::Transient(format!(
            "AssumeRole {role_arn}: no credentials in the answer"
        ))
    })?;
    let expiry = SystemTime::try_from(*c.expiration())
        .unwrap_or_else(|_| SystemTime::now() + Duration::from_secs(900));
    let credentials = Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_owned()),
        Some(expiry),
        "thingpress-target",
    );
    Ok((credentials, expiry))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use aws_config::BehaviorVersion;
    use aws_sdk_sts::error::ErrorMetadata;
    use aws_sdk_sts::operation::assume_role::{AssumeRoleError, AssumeRoleOutput};
    use aws_sdk_sts::primitives::DateTime;
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    const ROLE: &str = "arn:aws:iam::222222222222:role/thingpress-target";

    fn other_account() -> Target {
        Target {
            region: "eu-west-1".into(),
            role_arn: Some(ROLE.into()),
            external_id: Some("ext-1".into()),
        }
    }

    fn clients(rules: &[&Rule]) -> TargetClients {
        let config = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .build();
        let sts = mock_client!(aws_sdk_sts, RuleMode::MatchAny, rules);
        TargetClients::with_sts(&config, sts, "thingpress-test")
    }

    /// AssumeRole of the target's role with its external id, answering credentials that last
    /// `left`.
    fn assumed(left: Duration) -> Rule {
        mock!(aws_sdk_sts::Client::assume_role)
            .match_requests(|r| {
                r.role_arn() == Some(ROLE)
                    && r.external_id() == Some("ext-1")
                    && r.role_session_name() == Some("thingpress-test")
            })
            .then_output(move || {
                let credentials = aws_sdk_sts::types::Credentials::builder()
                    .access_key_id("ASIAEXAMPLE")
                    .secret_access_key("secret")
                    .session_token("token")
                    .expiration(DateTime::from(SystemTime::now() + left))
                    .build()
                    .unwrap();
                AssumeRoleOutput::builder().credentials(credentials).build()
            })
    }

    #[tokio::test]
    async fn a_role_is_assumed_once_while_its_credentials_last() {
        let rule = assumed(Duration::from_secs(3600));
        let clients = clients(&[&rule]);
        let iot = clients.iot(&other_account()).await.unwrap();
        clients.iot(&other_account()).await.unwrap();
        assert_eq!(rule.num_calls(), 1);
        assert_eq!(iot.config().region().map(|r| r.as_ref()), Some("eu-west-1"));
        // The stack's own account needs no role.
        clients.iot(&Target::home("eu-west-1")).await.unwrap();
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn credentials_near_their_end_are_renewed_before_a_call_can_meet_it() {
        let rule = assumed(RENEW_BEFORE - Duration::from_secs(60));
        let clients = clients(&[&rule]);
        clients.iot(&other_account()).await.unwrap();
        clients.iot(&other_account()).await.unwrap();
        assert_eq!(rule.num_calls(), 2);
    }

    #[tokio::test]
    async fn a_refused_role_is_target_unavailable_and_sts_throttling_is_retried_later() {
        let denied = mock!(aws_sdk_sts::Client::assume_role).then_error(|| {
            AssumeRoleError::generic(
                ErrorMetadata::builder()
                    .code("AccessDenied")
                    .message("not authorized to perform: sts:AssumeRole")
                    .build(),
            )
        });
        let err = clients(&[&denied]).iot(&other_account()).await.unwrap_err();
        assert!(matches!(err, ImportError::TargetUnavailable(_)), "{err:?}");
        assert!(err.to_string().contains(ROLE), "{err}");

        let throttled = mock!(aws_sdk_sts::Client::assume_role).then_error(|| {
            AssumeRoleError::generic(ErrorMetadata::builder().code("Throttling").build())
        });
        let err = clients(&[&throttled])
            .iot(&other_account())
            .await
            .unwrap_err();
        assert!(matches!(err, ImportError::Throttled(_)), "{err:?}");
    }
}
