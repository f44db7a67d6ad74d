//! Which Thingpress stack a command talks to: a deployed CloudFormation stack (`--stack`), the
//! local stack (`--local`), or, with neither, `THINGPRESS_BUCKET` and
//! `THINGPRESS_STATE_MACHINE_ARN` from the environment (what `script/local env` exports).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_iot::config::{Credentials, Region};
use serde_json::Value;
use thingpress_budget::{DynamoLeases, LeaseTable};
use thingpress_importer::{Api, Quotas, RESERVE_ENV_VAR, reserve_from_env};
use thingpress_run::AllowList;
use thingpress_run::settings::{ALLOWED_POLICIES_ENV_VAR, ALLOWED_THING_GROUPS_ENV_VAR};

/// The stack output naming the budget's lease table (infra/template.yaml).
pub const BUDGET_TABLE_OUTPUT: &str = "BudgetTableName";

/// The variable naming the lease table when the stack comes from the environment.
pub const BUDGET_TABLE_CLI_ENV_VAR: &str = "THINGPRESS_BUDGET_TABLE";

/// What Split's allow-list variables start with.
const ALLOWED_PREFIX: &str = "ALLOWED_";

/// Split's variables that size a run (`thingpress plan` reads them): children, chunk size, a
/// child's capacity, Register's timeout (EXPRESS children have the short one).
pub const SIZING_VARS: [&str; 4] = [
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_CHUNK_SIZE",
    "CHILD_CAPACITY",
    thingpress_run::settings::REGISTER_TIMEOUT_ENV_VAR,
];

/// Options every stack command takes.
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// The deployed CloudFormation stack whose outputs name the import bucket and state machine
    /// (region and credentials the usual AWS way).
    #[arg(
        long,
        global = true,
        env = "THINGPRESS_STACK",
        conflicts_with = "local"
    )]
    pub stack: Option<String>,
    /// The local stack started by `script/local up && script/local deploy` (its state file:
    /// $THINGPRESS_LOCAL_DIR/stack.json, default ./.local/stack.json).
    #[arg(long, global = true)]
    pub local: bool,
}

/// A resolved stack: SDK configuration, bucket and state machine.
#[derive(Debug, Clone)]
pub struct Target {
    pub config: SdkConfig,
    pub bucket: String,
    pub state_machine_arn: String,
    /// The Register function's pacing settings as its environment names them (`QUOTA_*`): the
    /// local stack's function environment, a deployed stack's Quota* parameters, or this
    /// process's environment. Missing ones take the importer's defaults.
    pub pacing_env: BTreeMap<String, String>,
    /// Split's allow-list settings (`ALLOWED_POLICIES`, `ALLOWED_THING_GROUPS`) from the same
    /// places; empty when the stack's setting cannot be read.
    pub allow_env: BTreeMap<String, String>,
    /// Split's sizing settings ([`SIZING_VARS`]) from the same places; missing ones take the
    /// template's defaults.
    pub sizing_env: BTreeMap<String, String>,
    /// The account-wide budget's lease table: a deployed stack's `BudgetTableName` output, the
    /// local stack's `BUDGET_TABLE`, or `THINGPRESS_BUDGET_TABLE` (what `script/local env`
    /// exports). `None` when the stack has none (one from before the budget).
    pub budget_table: Option<String>,
}

impl Target {
    /// Finds the stack the options name.
    pub async fn resolve(args: &TargetArgs) -> anyhow::Result<Target> {
        if args.local {
            return Self::local(&local_dir().join("stack.json")).await;
        }
        let config = thingpress_aws::load_config().await;
        if let Some(stack) = &args.stack {
            return Self::cloudformation(config, stack).await;
        }
        match (
            std::env::var("THINGPRESS_BUCKET"),
            std::env::var("THINGPRESS_STATE_MACHINE_ARN"),
        ) {
            (Ok(bucket), Ok(state_machine_arn)) => Ok(Target {
                config,
                bucket,
                state_machine_arn,
                pacing_env: std::env::vars()
                    .filter(|(name, _)| name.starts_with("QUOTA_"))
                    .collect(),
                allow_env: std::env::vars()
                    .filter(|(name, _)| name.starts_with(ALLOWED_PREFIX))
                    .collect(),
                sizing_env: std::env::vars()
                    .filter(|(name, _)| SIZING_VARS.contains(&name.as_str()))
                    .collect(),
                budget_table: non_blank(std::env::var(BUDGET_TABLE_CLI_ENV_VAR).ok()),
            }),
            _ => bail!(
                "no stack named: pass --stack NAME or --local (or set THINGPRESS_BUCKET and \
                 THINGPRESS_STATE_MACHINE_ARN)"
            ),
        }
    }

    /// The local stack from its state file; endpoint = the edge, access key `$AWS_ACCESS_KEY_ID`
    /// (default `test`).
    async fn local(state_file: &std::path::Path) -> anyhow::Result<Target> {
        let text = std::fs::read_to_string(state_file).with_context(|| {
            format!(
                "no local stack at {} (start one with script/local up && script/local deploy)",
                state_file.display()
            )
        })?;
        let state: Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not JSON", state_file.display()))?;
        let field = |pointer: &str| {
            state
                .pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let (Some(endpoint), Some(bucket)) = (field("/endpoint"), field("/bucket")) else {
            bail!("{}: no endpoint or bucket", state_file.display());
        };
        let Some(state_machine_arn) = field("/deployed/stateMachineArn") else {
            bail!(
                "the local stack in {} is not deployed (run script/local deploy)",
                state_file.display()
            );
        };
        let region = field("/region").unwrap_or_else(|| "us-east-1".to_owned());
        // The local edge authorizes by access key id: `script/local env` exports the operator's
        // (infra/operator-policy.json); without one the key is `test`, which it leaves unchecked.
        let access_key = std::env::var("AWS_ACCESS_KEY_ID")
            .ok()
            .filter(|key| !key.is_empty())
            .unwrap_or_else(|| "test".to_owned());
        let config = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(Region::new(region))
            .credentials_provider(Credentials::new(
                access_key,
                "test",
                None,
                None,
                "local-stack",
            ))
            .retry_config(thingpress_aws::short_retry())
            .load()
            .await;
        let pacing_env = state
            .get("functionEnv")
            .and_then(Value::as_object)
            .map(|env| {
                env.iter()
                    .filter(|(name, _)| name.starts_with("QUOTA_"))
                    .filter_map(|(name, value)| Some((name.clone(), value.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        let split_env = |keep: &dyn Fn(&str) -> bool| -> BTreeMap<String, String> {
            state
                .pointer("/functionEnvs/SplitFunction")
                .and_then(Value::as_object)
                .map(|env| {
                    env.iter()
                        .filter(|(name, _)| keep(name))
                        .filter_map(|(name, value)| {
                            Some((name.clone(), value.as_str()?.to_owned()))
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let allow_env = split_env(&|name| name.starts_with(ALLOWED_PREFIX));
        let sizing_env = split_env(&|name| SIZING_VARS.contains(&name));
        let budget_table = thingpress_budget::table_name_from_env(|name| {
            state
                .pointer("/functionEnv")?
                .get(name)?
                .as_str()
                .map(str::to_owned)
        });
        Ok(Target {
            config,
            bucket,
            state_machine_arn,
            pacing_env,
            allow_env,
            sizing_env,
            budget_table,
        })
    }

    /// A deployed stack: its outputs ImportBucketName and ImportStateMachineArn.
    async fn cloudformation(config: SdkConfig, stack: &str) -> anyhow::Result<Target> {
        let cfn = aws_sdk_cloudformation::Client::new(&config);
        let out = cfn
            .describe_stacks()
            .stack_name(stack)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("describing stack {stack}: {}", sdk_message(&e)))?;
        let outputs = out
            .stacks()
            .first()
            .map(|s| s.outputs())
            .unwrap_or_default();
        let parameters: BTreeMap<&str, &str> = out
            .stacks()
            .first()
            .map(|s| s.parameters())
            .unwrap_or_default()
            .iter()
            .filter_map(|p| Some((p.parameter_key()?, p.parameter_value()?)))
            .collect();
        let pacing_env = pacing_env_of_parameters(&parameters);
        let allow_env = [
            ("AllowedPolicies", ALLOWED_POLICIES_ENV_VAR),
            ("AllowedThingGroups", ALLOWED_THING_GROUPS_ENV_VAR),
        ]
        .iter()
        .filter_map(|(parameter, var)| {
            Some(((*var).to_owned(), (*parameters.get(parameter)?).to_owned()))
        })
        .collect();
        let output = |name: &str| {
            outputs
                .iter()
                .find(|o| o.output_key() == Some(name))
                .and_then(|o| o.output_value())
                .map(str::to_owned)
                .with_context(|| {
                    format!("stack {stack} has no output {name}: is it a Thingpress stack?")
                })
        };
        Ok(Target {
            bucket: output("ImportBucketName")?,
            state_machine_arn: output("ImportStateMachineArn")?,
            config,
            pacing_env,
            allow_env,
            sizing_env: sizing_env_of_parameters(&parameters),
            // Optional: a stack from before the budget has no table.
            budget_table: non_blank(output(BUDGET_TABLE_OUTPUT).ok()),
        })
    }

    /// The stack's allow-list of policies and thing groups, when its setting could be read.
    pub fn allow_list(&self) -> anyhow::Result<Option<AllowList>> {
        if self.allow_env.is_empty() {
            return Ok(None);
        }
        AllowList::from_lookup(|name| self.allow_env.get(name).cloned())
            .map(Some)
            .map_err(|e| anyhow::anyhow!("the stack's allow-list: {e}"))
    }

    /// S3, path-style when an endpoint is set (the local stack).
    pub fn s3(&self) -> aws_sdk_s3::Client {
        thingpress_run::store::s3_client(&self.config)
    }

    pub fn sfn(&self) -> aws_sdk_sfn::Client {
        aws_sdk_sfn::Client::new(&self.config)
    }

    pub fn iot(&self) -> aws_sdk_iot::Client {
        aws_sdk_iot::Client::new(&self.config)
    }

    /// Service Quotas (the account's applied IoT quotas; the local edge answers it too).
    pub fn service_quotas(&self) -> aws_sdk_servicequotas::Client {
        aws_sdk_servicequotas::Client::new(&self.config)
    }

    /// The lease table of the account-wide budget, with its DynamoDB client (built here, once
    /// per command); `None` when the stack names no table.
    pub fn lease_table(&self) -> Option<Arc<dyn LeaseTable>> {
        let table = self.budget_table.as_deref()?;
        Some(Arc::new(DynamoLeases::from_config(&self.config, table)))
    }

    /// A sizing setting ([`SIZING_VARS`]) as a number, `None` when the stack does not say.
    pub fn sizing(&self, name: &str) -> anyhow::Result<Option<f64>> {
        match self.sizing_env.get(name) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n >= 0.0)
                .map(Some)
                .with_context(|| format!("the stack's {name}={v:?} is not a number")),
        }
    }

    /// The quotas and the reserve Register paces by (see `pacing_env`).
    pub fn pacing(&self) -> anyhow::Result<(Quotas, f64)> {
        let lookup = |name: &str| self.pacing_env.get(name).cloned();
        let quotas = Quotas::from_env(lookup).context("the stack's quota settings")?;
        let reserve = reserve_from_env(lookup).context("the stack's quota settings")?;
        Ok((quotas, reserve))
    }

    /// The ARN of execution `name` of the import state machine.
    pub fn execution_arn(&self, name: &str) -> String {
        format!(
            "{}:{name}",
            self.state_machine_arn
                .replacen(":stateMachine:", ":execution:", 1)
        )
    }
}

/// A blank name is no name.
fn non_blank(name: Option<String>) -> Option<String> {
    name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty())
}

/// A deployed stack's `Quota<Api>` and `QuotaReserve` parameters (infra/template.yaml) under
/// the names of the Lambda environment variables they fill.
fn pacing_env_of_parameters(parameters: &BTreeMap<&str, &str>) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for api in Api::ALL {
        if let Some(value) = parameters.get(api.template_parameter()) {
            env.insert(api.quota_env_var().to_owned(), (*value).to_owned());
        }
    }
    if let Some(value) = parameters.get("QuotaReserve") {
        env.insert(RESERVE_ENV_VAR.to_owned(), (*value).to_owned());
    }
    env
}

/// A deployed stack's sizing parameters (infra/template.yaml) under Split's variable names;
/// `ChildExecutionType` becomes Register's timeout (110 s EXPRESS, 900 s STANDARD).
fn sizing_env_of_parameters(parameters: &BTreeMap<&str, &str>) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for (parameter, var) in [
        ("MaxConcurrency", "DEFAULT_MAX_CONCURRENCY"),
        ("ChunkSize", "DEFAULT_CHUNK_SIZE"),
        ("ChildCapacity", "CHILD_CAPACITY"),
    ] {
        if let Some(value) = parameters.get(parameter) {
            env.insert(var.to_owned(), (*value).to_owned());
        }
    }
    if let Some(kind) = parameters.get("ChildExecutionType") {
        let timeout = if *kind == "EXPRESS" { "110" } else { "900" };
        env.insert(
            thingpress_run::settings::REGISTER_TIMEOUT_ENV_VAR.to_owned(),
            timeout.to_owned(),
        );
    }
    env
}

/// The local stack's state directory: $THINGPRESS_LOCAL_DIR, or ./.local.
fn local_dir() -> PathBuf {
    std::env::var_os("THINGPRESS_LOCAL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".local"))
}

/// The service's own message for an SDK error (its Display is only "service error").
pub fn sdk_message<E, R>(err: &aws_sdk_sfn::error::SdkError<E, R>) -> String
where
    E: aws_sdk_sfn::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match err.as_service_error() {
        Some(service) => match (service.code(), service.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.to_owned(),
            _ => service.to_string(),
        },
        None => aws_sdk_sfn::error::DisplayErrorContext(err).to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn stack_parameters_become_the_functions_quota_variables() {
        let parameters: BTreeMap<&str, &str> = [
            ("QuotaRegisterCertificateWithoutCA", "20"),
            ("QuotaAttachPolicy", "30"),
            ("QuotaListPrincipalThings", "40"),
            ("QuotaReserve", "0.25"),
            ("RunRetentionDays", "30"),
        ]
        .into();
        let env = pacing_env_of_parameters(&parameters);
        assert_eq!(env.len(), 4, "{env:?}");
        let lookup = |name: &str| env.get(name).cloned();
        let quotas = Quotas::from_env(lookup).unwrap();
        assert_eq!(quotas.get(Api::RegisterCertificateWithoutCA), 20.0);
        assert_eq!(quotas.get(Api::AttachPolicy), 30.0);
        assert_eq!(quotas.get(Api::ListPrincipalThings), 40.0);
        assert_eq!(
            quotas.get(Api::CreateThing),
            Quotas::default().get(Api::CreateThing)
        );
        assert_eq!(reserve_from_env(lookup).unwrap(), 0.25);
    }

    #[test]
    fn stack_parameters_become_splits_sizing_variables() {
        let parameters: BTreeMap<&str, &str> = [
            ("MaxConcurrency", "0"),
            ("ChunkSize", "500"),
            ("ChildExecutionType", "EXPRESS"),
            ("QuotaReserve", "0.25"),
        ]
        .into();
        let env = sizing_env_of_parameters(&parameters);
        assert_eq!(env.len(), 3, "{env:?}");
        assert_eq!(env["DEFAULT_MAX_CONCURRENCY"], "0");
        assert_eq!(env["REGISTER_TIMEOUT_SECONDS"], "110");
        let standard = sizing_env_of_parameters(&[("ChildExecutionType", "STANDARD")].into());
        assert_eq!(standard["REGISTER_TIMEOUT_SECONDS"], "900");
    }

    #[tokio::test]
    async fn the_local_stacks_budget_table_is_its_functions_budget_table() {
        let dir = std::env::temp_dir().join(format!("thingpress-target-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("stack.json");
        let state = |table: &str| {
            serde_json::json!({
                "endpoint": "http://127.0.0.1:1",
                "bucket": "b",
                "deployed": {"stateMachineArn": "arn:aws:states:us-east-1:1:stateMachine:s"},
                "functionEnv": {"BUDGET_TABLE": table, "QUOTA_RESERVE": "0.2"},
            })
            .to_string()
        };
        std::fs::write(&file, state("tp-budget")).unwrap();
        let target = Target::local(&file).await.unwrap();
        assert_eq!(target.budget_table.as_deref(), Some("tp-budget"));
        assert!(target.lease_table().is_some());
        assert_eq!(target.pacing().unwrap().1, 0.2);
        std::fs::write(&file, state(" ")).unwrap();
        let target = Target::local(&file).await.unwrap();
        assert_eq!(target.budget_table, None);
        assert!(target.lease_table().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
