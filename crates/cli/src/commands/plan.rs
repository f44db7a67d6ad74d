//! `thingpress plan`: before an import, what it will do and cost. The manifest is read here the
//! way `inspect` reads it (the profile's format options, as Split reads it); the IoT calls come
//! from the importer's catalogue, the account's quotas from Service Quotas, the sizing and the
//! cost from the cost model (`thingpress_run::cost`). `import` prints the same block.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use aws_sdk_servicequotas::error::SdkError;
use serde::Serialize;
use thingpress_importer::{Api, Quotas};
use thingpress_product::Profile;
use thingpress_run::cost::{self, Deployment, Pipeline, Projection};

use crate::commands::inspect;
use crate::follow::human_duration;
use crate::output::Output;
use crate::target::{Target, TargetArgs, sdk_message};

/// The Service Quotas service code of AWS IoT Core.
const IOT_SERVICE_CODE: &str = "iot";
/// Seconds between two chunks of one child: Decorate, the state transitions, cold reads.
pub const CHUNK_OVERHEAD_SECONDS: f64 = 2.0;

/// Options of `thingpress plan`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
The rate is that of the bottleneck API: min over the APIs a new certificate calls of
min(account quota, stack's Quota* parameter) x (1 - QuotaReserve) / calls per certificate,
and no more than children x a child's capacity.

ETA = parse + accepted / rate + 2 s x ceil(chunks / children), where parse is this machine's
read of the manifest (standing in for Split's) and 2 s is a child's pause between two chunks.

IoT calls assume every accepted entry is a new certificate: an upper bound. The cost is the
cost model (thingpress_run::cost) projected from the reference run of the README; AWS IoT's
registry charges are listed apart from the Lambda + Step Functions + S3 + DynamoDB total.")]
pub struct Args {
    /// The manifest file.
    pub file: PathBuf,
    /// The stored product profile to import with (see `thingpress profile list`).
    #[arg(long)]
    pub profile: String,
    /// `table`: the plan for people; `json`: one JSON document.
    #[arg(long, default_value_t = Output::Table,
          value_parser = Output::only(&[Output::Table, Output::Json]))]
    pub output: Output,
}

/// Runs the command.
pub async fn run(target: &TargetArgs, args: &Args) -> Result<()> {
    let target = Target::resolve(target).await?;
    let plan = make(&target, &args.file, &args.profile).await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match args.output {
        Output::Json => {
            serde_json::to_writer_pretty(&mut out, &plan).context("writing the plan")?;
            writeln!(out)?;
        }
        _ => write_table(&mut out, &plan)?,
    }
    out.flush().context("cannot write to stdout")
}

/// The plan of importing `file` with the stored profile `profile` on the target's stack.
pub async fn make(target: &Target, file: &std::path::Path, profile: &str) -> Result<Plan> {
    let profile = crate::commands::registry::load_profile(target, profile).await?;
    let options = profile
        .manifest_options()
        .with_context(|| format!("profile {}", profile.name))?;
    // `each` never stops the read, so there is a result.
    let read = inspect::read(file, &options, |_| Ok(true))?
        .with_context(|| format!("{}: the read stopped", file.display()))?;
    let (stack_quotas, reserve) = target.pacing()?;
    let account = account_quotas(&target.service_quotas()).await;
    let sizing = StackSizing {
        max_concurrency: target.sizing("DEFAULT_MAX_CONCURRENCY")?.unwrap_or(0.0),
        chunk_size: target.sizing("DEFAULT_CHUNK_SIZE")?,
        child_capacity: target
            .sizing("CHILD_CAPACITY")?
            .filter(|c| *c > 0.0)
            .unwrap_or(thingpress_run::settings::DEFAULT_CHILD_CAPACITY),
        express: target
            .sizing(thingpress_run::settings::REGISTER_TIMEOUT_ENV_VAR)?
            .is_some_and(|t| t < 900.0),
    };
    build(
        &file.display().to_string(),
        &read,
        &profile,
        &account,
        &stack_quotas,
        reserve,
        &sizing,
    )
}

/// Where a quota came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "reason")]
pub enum QuotaSource {
    /// The account's applied value (GetServiceQuota).
    Applied,
    /// AWS's default for the account (GetAWSDefaultServiceQuota: the applied value is not
    /// available, NoSuchResource).
    AwsDefault,
    /// The importer's catalogue, because Service Quotas could not say (the reason).
    BuiltIn(String),
}

impl QuotaSource {
    /// The text of the table's source column.
    pub fn describe(&self) -> String {
        match self {
            QuotaSource::Applied => "applied".to_owned(),
            QuotaSource::AwsDefault => "AWS default".to_owned(),
            QuotaSource::BuiltIn(reason) => {
                format!("built-in default (Service Quotas: {reason})")
            }
        }
    }
}

/// One API's rate quota in the account.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountQuota {
    /// The API.
    pub api: Api,
    /// Requests per second.
    pub per_second: f64,
    /// Where the value came from.
    pub source: QuotaSource,
}

/// Why a Service Quotas call gave no value, and whether asking again is pointless (no answer
/// from the service at all: no network, no endpoint).
struct NoValue {
    reason: String,
    unreachable: bool,
}

fn no_value<E, R>(err: &SdkError<E, R>) -> NoValue
where
    E: aws_sdk_servicequotas::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let mut reason = sdk_message(err);
    if reason.chars().count() > 200 {
        reason = format!("{}…", reason.chars().take(200).collect::<String>());
    }
    NoValue {
        reason,
        unreachable: err.as_service_error().is_none(),
    }
}

/// The account's quota of every API: GetServiceQuota (applied); on NoSuchResource,
/// GetAWSDefaultServiceQuota; else, or on any other failure (AccessDenied, no network), the
/// catalogue's default with the reason. Once the service does not answer at all, the remaining
/// APIs are not asked.
pub async fn account_quotas(sq: &aws_sdk_servicequotas::Client) -> Vec<AccountQuota> {
    let mut out = Vec::new();
    let mut unreachable: Option<String> = None;
    for api in Api::ALL {
        let found = match &unreachable {
            Some(reason) => Err(reason.clone()),
            None => match account_quota(sq, api).await {
                Ok(found) => Ok(found),
                Err(no) => {
                    if no.unreachable {
                        unreachable = Some(no.reason.clone());
                    }
                    Err(no.reason)
                }
            },
        };
        out.push(match found {
            Ok((per_second, source)) => AccountQuota {
                api,
                per_second,
                source,
            },
            Err(reason) => AccountQuota {
                api,
                per_second: api.default_quota(),
                source: QuotaSource::BuiltIn(reason),
            },
        });
    }
    out
}

async fn account_quota(
    sq: &aws_sdk_servicequotas::Client,
    api: Api,
) -> Result<(f64, QuotaSource), NoValue> {
    let applied = sq
        .get_service_quota()
        .service_code(IOT_SERVICE_CODE)
        .quota_code(api.quota_code())
        .send()
        .await;
    match applied {
        Ok(out) => {
            if let Some(value) = out.quota().and_then(|q| q.value()).filter(|v| *v > 0.0) {
                return Ok((value, QuotaSource::Applied));
            }
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_no_such_resource_exception()) => {}
        Err(e) => return Err(no_value(&e)),
    }
    let default = sq
        .get_aws_default_service_quota()
        .service_code(IOT_SERVICE_CODE)
        .quota_code(api.quota_code())
        .send()
        .await
        .map_err(|e| no_value(&e))?;
    default
        .quota()
        .and_then(|q| q.value())
        .filter(|v| *v > 0.0)
        .map(|v| (v, QuotaSource::AwsDefault))
        .ok_or_else(|| NoValue {
            reason: format!("no value for {}", api.quota_code()),
            unreachable: false,
        })
}

/// The stack's sizing settings the plan needs.
#[derive(Debug, Clone, PartialEq)]
pub struct StackSizing {
    /// The stack's MaxConcurrency (0: sized from the budget and `child_capacity`).
    pub max_concurrency: f64,
    /// The stack's ChunkSize.
    pub chunk_size: Option<f64>,
    /// Certificates per second one child reaches without waiting for tokens.
    pub child_capacity: f64,
    /// Children are EXPRESS.
    pub express: bool,
}

/// One API's row of the plan.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiRow {
    /// The API.
    pub api: Api,
    /// Calls per new certificate.
    pub calls_per_certificate: usize,
    /// Calls for the accepted entries (an upper bound: every one a new certificate).
    pub calls: u64,
    /// The account's quota, requests/s.
    pub quota: f64,
    /// Where `quota` came from.
    pub source: QuotaSource,
    /// The stack's Quota* setting, requests/s (what Register paces by).
    pub stack_quota: f64,
    /// Certificates/s this API allows: min(quota, stack) × (1 − reserve) ÷ calls; `None` when a
    /// new certificate does not call it.
    pub certificates_per_second: Option<f64>,
}

/// The plan.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// The manifest file.
    pub file: String,
    /// Its format.
    pub supplier: String,
    /// The profile.
    pub profile: String,
    /// Manifest entries.
    pub entries: u64,
    /// Entries an import would register.
    pub accepted: u64,
    /// Entries it would reject.
    pub rejected: u64,
    /// Seconds this machine took to read the manifest.
    pub parse_seconds: f64,
    /// Per API.
    pub apis: Vec<ApiRow>,
    /// The stack's QuotaReserve.
    pub quota_reserve: f64,
    /// The API that bounds the rate.
    pub bottleneck: Option<Api>,
    /// Certificates per second (the bottleneck's, or the children's capacity if lower).
    pub certificates_per_second: f64,
    /// What bounds the rate, in words.
    pub limited_by: String,
    /// Children at once.
    pub children: u32,
    /// Entries per chunk.
    pub chunk_size: u32,
    /// Chunks.
    pub chunks: u64,
    /// Seconds: parse + accepted ÷ rate + the pauses between chunks.
    pub eta_seconds: f64,
    /// The cost model's projection (`items`: Lambda, Step Functions, S3, DynamoDB;
    /// `iotItems`: AWS IoT's registry, apart).
    pub cost: Projection,
    /// The same deployment's projection of 1,000,000 certificates, to compare with the README.
    pub cost_per_million: Projection,
    /// The profile's targets (empty: the stack's own account and Region). The rows, rate, ETA
    /// and cost above are one target's: the targets register in parallel, each at its own
    /// quotas, so calls and cost are that many times these.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// Things to check before importing.
    pub warnings: Vec<String>,
}

/// The plan from the manifest's counts, the profile, the account's and the stack's quotas, the
/// reserve and the stack's sizing. Pure, so the numbers are tested without a stack.
pub fn build(
    file: &str,
    read: &inspect::Counted,
    profile: &Profile,
    account: &[AccountQuota],
    stack: &Quotas,
    reserve: f64,
    sizing: &StackSizing,
) -> Result<Plan> {
    let (policies, groups) = (profile.policies.len(), profile.thing_groups.len());
    let accepted = read.tally.accepted;
    let mut warnings = Vec::new();
    let mut apis = Vec::new();
    for api in Api::ALL {
        let (quota, source) = account
            .iter()
            .find(|q| q.api == api)
            .map(|q| (q.per_second, q.source.clone()))
            .unwrap_or_else(|| {
                let reason = "not asked".to_owned();
                (api.default_quota(), QuotaSource::BuiltIn(reason))
            });
        let stack_quota = stack.get(api);
        if source == QuotaSource::Applied && (stack_quota - quota).abs() > 1e-9 {
            warnings.push(format!(
                "the stack's {} is {stack_quota}/s but the account's applied quota is {quota}/s: \
                 {}",
                api.template_parameter(),
                if stack_quota > quota {
                    "Register will be throttled down to it"
                } else {
                    "Register leaves the difference unused"
                }
            ));
        }
        let calls_per_certificate = api.calls_per_new_certificate(policies, groups);
        let certificates_per_second = (calls_per_certificate > 0)
            .then(|| quota.min(stack_quota) * (1.0 - reserve) / calls_per_certificate as f64);
        apis.push(ApiRow {
            api,
            calls_per_certificate,
            calls: accepted * calls_per_certificate as u64,
            quota,
            source,
            stack_quota,
            certificates_per_second,
        });
    }
    let bottleneck = apis
        .iter()
        .filter_map(|r| Some((r.api, r.certificates_per_second?)))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    let Some((bottleneck_api, budget)) = bottleneck.filter(|(_, r)| *r > 0.0 && r.is_finite())
    else {
        anyhow::bail!("the quotas less the reserve allow no certificates per second");
    };

    let mut measured = cost::reference_run();
    measured.policies = policies;
    measured.groups = groups;
    let deployment = Deployment {
        label: format!("{file} with profile {}", profile.name),
        certificates: accepted,
        quotas: apis
            .iter()
            .map(|r| (r.api.as_str().to_owned(), r.quota.min(r.stack_quota)))
            .collect(),
        quota_reserve: reserve,
        max_concurrency: profile.max_concurrency,
        // Whole numbers Split validates; the casts saturate.
        stack_max_concurrency: sizing.max_concurrency as u32,
        child_capacity: sizing.child_capacity,
        chunk_size: profile
            .chunk_size
            .or(sizing.chunk_size.map(|c| c as u32).filter(|c| *c > 0)),
        express: sizing.express,
        memory_mb: cost::template_memory_mb(),
        pipeline: Pipeline::Budget,
    };
    let per_million = Deployment {
        certificates: 1_000_000,
        ..deployment.clone()
    };
    let projection =
        cost::project(&measured, &deployment, &cost::PRICES).map_err(anyhow::Error::msg)?;
    let cost_per_million =
        cost::project(&measured, &per_million, &cost::PRICES).map_err(anyhow::Error::msg)?;
    let children = projection.children.max(1);
    let capacity = f64::from(children) * sizing.child_capacity;
    let (rate, limited_by) = if capacity < budget {
        (
            capacity,
            format!(
                "{children} children × {}/s a child (maxConcurrency)",
                sizing.child_capacity
            ),
        )
    } else {
        (budget, format!("{bottleneck_api} (quota less the reserve)"))
    };
    let targets: Vec<String> = profile.targets.iter().map(|t| t.id()).collect();
    if targets.len() > 1 {
        warnings.push(format!(
            "{} targets: the quotas above are the stack's account and Region's; the other \
             targets are paced by the stack's Quota* settings, each at its own quotas, so an \
             account whose applied quotas are lower will throttle its target down to them",
            targets.len()
        ));
    }
    let rounds = projection.chunks.div_ceil(u64::from(children));
    let eta_seconds = if accepted == 0 {
        read.elapsed_s
    } else {
        read.elapsed_s + accepted as f64 / rate + rounds as f64 * CHUNK_OVERHEAD_SECONDS
    };
    Ok(Plan {
        file: file.to_owned(),
        supplier: read.supplier.to_string(),
        profile: profile.name.clone(),
        entries: read.tally.entries,
        accepted,
        rejected: read.tally.rejected.values().sum(),
        parse_seconds: read.elapsed_s,
        apis,
        quota_reserve: reserve,
        bottleneck: Some(bottleneck_api),
        certificates_per_second: rate,
        limited_by,
        children,
        chunk_size: projection.chunk_size,
        chunks: projection.chunks,
        eta_seconds,
        cost: projection,
        cost_per_million,
        targets,
        warnings,
    })
}

/// The plan as text.
pub fn write_table(out: &mut impl Write, plan: &Plan) -> Result<()> {
    writeln!(
        out,
        "{}: {} manifest, profile {}",
        plan.file, plan.supplier, plan.profile
    )?;
    if !plan.targets.is_empty() {
        writeln!(
            out,
            "  targets   {} (in parallel; the calls, rate, ETA and cost below are each one's: \
             calls and cost are {} times these)",
            plan.targets.join(", "),
            plan.targets.len()
        )?;
    }
    writeln!(out, "  entries   {:>10}", plan.entries)?;
    writeln!(out, "  accepted  {:>10}", plan.accepted)?;
    writeln!(out, "  rejected  {:>10}", plan.rejected)?;
    writeln!(
        out,
        "\n{:<29} {:>8} {:>12} {:>8} {:>8} {:>9}  quota source",
        "IoT API", "per cert", "calls", "quota/s", "stack/s", "certs/s"
    )?;
    for r in &plan.apis {
        writeln!(
            out,
            "{:<29} {:>8} {:>12} {:>8} {:>8} {:>9}  {}",
            r.api.as_str(),
            r.calls_per_certificate,
            r.calls,
            r.quota,
            r.stack_quota,
            r.certificates_per_second
                .map(|c| format!("{c:.2}"))
                .unwrap_or_else(|| "-".to_owned()),
            r.source.describe()
        )?;
    }
    writeln!(
        out,
        "calls: upper bound, every accepted entry a new certificate; certs/s = min(quota, stack) \
         × (1 − reserve {}) ÷ per cert",
        plan.quota_reserve
    )?;
    writeln!(
        out,
        "\nrate      {:.2} certificates/s, limited by {}",
        plan.certificates_per_second, plan.limited_by
    )?;
    writeln!(
        out,
        "sizing    children {}, chunks {} of up to {} entries",
        plan.children, plan.chunks, plan.chunk_size
    )?;
    writeln!(
        out,
        "ETA       {} = parse {:.1} s + {} ÷ {:.2}/s + {} s × {} chunk(s) per child",
        human_duration(plan.eta_seconds),
        plan.parse_seconds,
        plan.accepted,
        plan.certificates_per_second,
        CHUNK_OVERHEAD_SECONDS,
        plan.chunks.div_ceil(u64::from(plan.children.max(1)))
    )?;
    let (p, m) = (&plan.cost, &plan.cost_per_million);
    writeln!(
        out,
        "\ncost (USD, {} prices of {}, projected from the README's reference run):",
        cost::PRICES.region,
        cost::PRICES.date
    )?;
    writeln!(
        out,
        "  {:<16} {:>12} {:>14}",
        "", "this manifest", "per 1,000,000"
    )?;
    let (here, million) = (p.by_service(), m.by_service());
    for (service, usd) in &here {
        let per_million = million.get(service).copied().unwrap_or_default();
        writeln!(
            out,
            "  {:<16} {usd:>12.4} {per_million:>14.2}",
            service.as_str()
        )?;
    }
    writeln!(
        out,
        "  {:<16} {:>12.4} {:>14.2}",
        "total", p.total_usd, m.total_usd
    )?;
    writeln!(
        out,
        "  {:<16} {:>12.4} {:>14.2}  billed apart: {:.0} registry operations (price from \
         memory: verify)",
        "AWS IoT Core",
        p.iot_usd,
        m.iot_usd,
        p.iot_items.iter().map(|i| i.quantity).sum::<f64>()
    )?;
    for w in &plan.warnings {
        writeln!(out, "warning: {w}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use aws_sdk_servicequotas::operation::get_aws_default_service_quota::{
        GetAWSDefaultServiceQuotaError, GetAwsDefaultServiceQuotaOutput,
    };
    use aws_sdk_servicequotas::operation::get_service_quota::{
        GetServiceQuotaError, GetServiceQuotaOutput,
    };
    use aws_sdk_servicequotas::types::ServiceQuota;
    use aws_sdk_servicequotas::types::error::{AccessDeniedException, NoSuchResourceException};
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use thingpress_manifest::{Options, Supplier};

    fn quota(code: &str, value: f64) -> ServiceQuota {
        ServiceQuota::builder()
            .service_code("iot")
            .quota_code(code)
            .value(value)
            .build()
    }

    #[tokio::test]
    async fn applied_then_aws_default_then_built_in_with_the_reason() {
        let register = Api::RegisterCertificateWithoutCA.quota_code();
        let attach = Api::AttachPolicy.quota_code();
        let applied = mock!(aws_sdk_servicequotas::Client::get_service_quota)
            .match_requests(move |r| r.quota_code() == Some(register))
            .then_output(move || {
                GetServiceQuotaOutput::builder()
                    .quota(quota(register, 40.0))
                    .build()
            });
        let denied = mock!(aws_sdk_servicequotas::Client::get_service_quota)
            .match_requests(move |r| r.quota_code() == Some(attach))
            .then_error(|| {
                GetServiceQuotaError::AccessDeniedException(
                    AccessDeniedException::builder()
                        .message("no servicequotas:GetServiceQuota")
                        .build(),
                )
            });
        let missing = mock!(aws_sdk_servicequotas::Client::get_service_quota).then_error(|| {
            GetServiceQuotaError::NoSuchResourceException(
                NoSuchResourceException::builder().message("none").build(),
            )
        });
        let create_thing = Api::CreateThing.quota_code();
        let default_denied = mock!(aws_sdk_servicequotas::Client::get_aws_default_service_quota)
            .match_requests(move |r| r.quota_code() == Some(create_thing))
            .then_error(|| {
                GetAWSDefaultServiceQuotaError::AccessDeniedException(
                    AccessDeniedException::builder().message("denied").build(),
                )
            });
        let default = mock!(aws_sdk_servicequotas::Client::get_aws_default_service_quota)
            .then_output(|| {
                GetAwsDefaultServiceQuotaOutput::builder()
                    .quota(quota("L-X", 7.0))
                    .build()
            });
        let sq = mock_client!(
            aws_sdk_servicequotas,
            RuleMode::MatchAny,
            [&applied, &denied, &missing, &default_denied, &default]
        );
        let quotas = account_quotas(&sq).await;
        assert_eq!(quotas.len(), Api::ALL.len());
        let of = |api: Api| quotas.iter().find(|q| q.api == api).unwrap();
        let r = of(Api::RegisterCertificateWithoutCA);
        assert_eq!((r.per_second, &r.source), (40.0, &QuotaSource::Applied));
        let p = of(Api::AttachPolicy);
        assert_eq!(p.per_second, Api::AttachPolicy.default_quota());
        let QuotaSource::BuiltIn(reason) = &p.source else {
            panic!("{p:?}");
        };
        assert!(reason.contains("AccessDeniedException"), "{reason}");
        assert!(
            p.source
                .describe()
                .starts_with("built-in default (Service Quotas: ")
        );
        let c = of(Api::CreateThing);
        assert_eq!(c.per_second, 100.0);
        assert!(matches!(c.source, QuotaSource::BuiltIn(_)), "{c:?}");
        let d = of(Api::DescribeCertificate);
        assert_eq!((d.per_second, &d.source), (7.0, &QuotaSource::AwsDefault));
        assert_eq!(d.source.describe(), "AWS default");
    }

    #[tokio::test]
    async fn an_unreachable_service_is_asked_once() {
        let sq = aws_sdk_servicequotas::Client::from_conf(
            aws_sdk_servicequotas::Config::builder()
                .behavior_version(aws_sdk_servicequotas::config::BehaviorVersion::latest())
                .region(aws_sdk_servicequotas::config::Region::new("us-east-1"))
                .credentials_provider(aws_sdk_servicequotas::config::Credentials::new(
                    "a", "b", None, None, "test",
                ))
                // Nothing listens on port 9 (discard) here: the connection is refused.
                .endpoint_url("http://127.0.0.1:9")
                .retry_config(aws_sdk_servicequotas::config::retry::RetryConfig::disabled())
                .build(),
        );
        let started = std::time::Instant::now();
        let quotas = account_quotas(&sq).await;
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        for q in &quotas {
            assert_eq!(q.per_second, q.api.default_quota());
            let QuotaSource::BuiltIn(reason) = &q.source else {
                panic!("{q:?}");
            };
            assert_eq!(
                reason,
                match &quotas[0].source {
                    QuotaSource::BuiltIn(r) => r,
                    _ => unreachable!(),
                }
            );
        }
    }

    fn fixture(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/upstream")
            .join(name)
    }

    fn profile(policies: usize, groups: usize) -> Profile {
        let mut p = Profile::named("demo");
        p.policies = (0..policies).map(|i| format!("p{i}")).collect();
        p.thing_groups = (0..groups).map(|i| format!("g{i}")).collect();
        p
    }

    fn applied(scale: f64) -> Vec<AccountQuota> {
        Api::ALL
            .iter()
            .map(|api| AccountQuota {
                api: *api,
                per_second: api.default_quota() * scale,
                source: QuotaSource::Applied,
            })
            .collect()
    }

    fn sizing(capacity: f64) -> StackSizing {
        StackSizing {
            max_concurrency: 0.0,
            chunk_size: None,
            child_capacity: capacity,
            express: false,
        }
    }

    /// The Espressif sample, counted the way `inspect` counts it.
    fn espressif() -> inspect::Counted {
        let options = Options {
            supplier: Supplier::Auto,
            ..Options::default()
        };
        inspect::read(&fixture("manifest-espressif.csv"), &options, |_| Ok(true))
            .unwrap()
            .unwrap()
    }

    #[test]
    fn the_plan_of_the_espressif_sample_at_default_quotas() {
        let read = espressif();
        assert!(read.tally.accepted > 0);
        let accepted = read.tally.accepted;
        let plan = build(
            "m.csv",
            &read,
            &profile(1, 1),
            &applied(1.0),
            &Quotas::default(),
            0.1,
            &sizing(20.0),
        )
        .unwrap();
        assert_eq!(plan.accepted, accepted);
        assert_eq!(plan.entries, plan.accepted + plan.rejected);
        // RegisterCertificateWithoutCA 10/s × 0.9 = 9/s; AttachPolicy 15 × 0.9 = 13.5/s.
        assert_eq!(plan.bottleneck, Some(Api::RegisterCertificateWithoutCA));
        assert!((plan.certificates_per_second - 9.0).abs() < 1e-9);
        let row = |api: Api| plan.apis.iter().find(|r| r.api == api).unwrap();
        assert_eq!(row(Api::CreateThing).calls, accepted);
        assert_eq!(row(Api::DescribeCertificate).calls, 0);
        assert_eq!(row(Api::DescribeCertificate).certificates_per_second, None);
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
        // Few certificates: one chunk, one child (20/s: the budget, not the child, bounds it).
        assert_eq!((plan.chunks, plan.children), (1, 1));
        let want = read.elapsed_s + accepted as f64 / 9.0 + CHUNK_OVERHEAD_SECONDS;
        assert!((plan.eta_seconds - want).abs() < 1e-9);
        assert_eq!(plan.cost.iot_items[0].quantity, 3.0 * accepted as f64);
        assert!(plan.cost.total_usd > 0.0);

        // Two policies: AttachPolicy (15 × 0.9 ÷ 2 = 6.75/s) becomes the bottleneck.
        let two = build(
            "m.csv",
            &read,
            &profile(2, 1),
            &applied(1.0),
            &Quotas::default(),
            0.1,
            &sizing(20.0),
        )
        .unwrap();
        assert_eq!(two.bottleneck, Some(Api::AttachPolicy));
        assert!((two.certificates_per_second - 6.75).abs() < 1e-9);
        let mut text = Vec::new();
        write_table(&mut text, &two).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("limited by AttachPolicy"), "{text}");
        assert!(text.contains("applied"), "{text}");
        assert!(text.contains("billed apart"), "{text}");
        // Per 1,000,000 at AttachPolicy's 6.75/s: the same sizing, a million certificates.
        assert_eq!(two.cost_per_million.iot_items[0].quantity, 3_000_000.0);
    }

    #[test]
    fn a_stack_setting_above_the_applied_quota_is_warned_and_bounds_the_rate() {
        let read = espressif();
        // The account has 5/s applied; the stack paces at the default 10/s.
        let mut account = applied(1.0);
        account[0].per_second = 5.0;
        let plan = build(
            "m.csv",
            &read,
            &profile(1, 1),
            &account,
            &Quotas::default(),
            0.1,
            &sizing(4.6),
        )
        .unwrap();
        assert!((plan.certificates_per_second - 4.5).abs() < 1e-9);
        assert_eq!(plan.warnings.len(), 1, "{:?}", plan.warnings);
        assert!(plan.warnings[0].contains("QuotaRegisterCertificateWithoutCA"));
        // A built-in fallback is no reason to warn: the account's value is unknown.
        let mut unknown = applied(1.0);
        unknown[0].per_second = 5.0;
        unknown[0].source = QuotaSource::BuiltIn("AccessDeniedException".into());
        let plan = build(
            "m.csv",
            &read,
            &profile(1, 1),
            &unknown,
            &Quotas::default(),
            0.1,
            &sizing(4.6),
        )
        .unwrap();
        assert!(plan.warnings.is_empty());
    }

    #[test]
    fn a_fixed_maxconcurrency_below_the_budget_limits_the_rate() {
        let read = espressif();
        let mut p = profile(1, 1);
        p.max_concurrency = Some(1);
        let plan = build(
            "m.csv",
            &read,
            &p,
            &applied(1.0),
            &Quotas::default(),
            0.1,
            &sizing(4.0),
        )
        .unwrap();
        assert!((plan.certificates_per_second - 4.0).abs() < 1e-9);
        assert!(
            plan.limited_by.contains("maxConcurrency"),
            "{}",
            plan.limited_by
        );
    }
}
