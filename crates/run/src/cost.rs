//! What an import costs and how long it takes: one measured run (`script/bench --e2e`, or the
//! reference run below) projected to any certificate count, quotas, reserve and sizing. The unit
//! prices live here and nowhere else. Pure: no I/O.
//!
//! Register paces every IoT call, so its billed time is children × the registration's
//! wall-clock, whatever the chunk size: sizing the Map to the fewest children that reach the
//! budget is what makes it cheap. The rest (Split, Decorate, Summarize, S3 requests, state
//! transitions, lease requests) scales with entries, chunks or children. AWS IoT's own registry
//! charges are listed apart from that total.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thingpress_importer::{Api, RESERVE_ENV_VAR, new_certificates_per_second};

use crate::Settings;
use crate::settings::{CHILD_CAPACITY_ENV_VAR, MAX_CONCURRENCY_ENV_VAR, REGISTER_TIMEOUT_ENV_VAR};

/// AWS unit prices, us-east-1, first tier (USD).
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Prices {
    /// When the prices were recorded (aws.amazon.com/{lambda,step-functions,s3,dynamodb}/pricing;
    /// not re-read from the build machine, which has no route to it).
    pub date: &'static str,
    /// The Region they apply to.
    pub region: &'static str,
    /// Lambda duration, arm64, per GB-second.
    pub lambda_arm64_gb_second: f64,
    /// Lambda requests, per request.
    pub lambda_request: f64,
    /// Step Functions Standard, per state transition.
    pub standard_transition: f64,
    /// Step Functions Express, per request (execution started).
    pub express_request: f64,
    /// Step Functions Express duration, per GB-second (first tier).
    pub express_gb_second: f64,
    /// S3 Standard PUT, COPY, POST, LIST, per request.
    pub s3_put: f64,
    /// S3 Standard GET and all other requests, per request.
    pub s3_get: f64,
    /// DynamoDB on-demand write request unit (the budget's lease heartbeat). As remembered from
    /// the DynamoDB pricing page, not re-read: verify it before quoting.
    pub dynamodb_write_request: f64,
    /// DynamoDB on-demand read request unit (the budget's lease Query). As remembered: verify.
    pub dynamodb_read_request: f64,
    /// AWS IoT Core registry operation (CreateThing, AttachThingPrincipal and
    /// AddThingToThingGroup are metered as such), per operation. From the IoT Core pricing page
    /// as remembered, not re-read on that date: verify it before quoting.
    pub iot_registry_operation: f64,
}

/// The prices every projection uses.
pub const PRICES: Prices = Prices {
    date: "2026-11-29",
    region: "us-east-1",
    lambda_arm64_gb_second: 0.000_013_333_4,
    lambda_request: 0.20 / 1_000_000.0,
    standard_transition: 0.025 / 1_000.0,
    express_request: 1.00 / 1_000_000.0,
    express_gb_second: 0.000_016_67,
    s3_put: 0.005 / 1_000.0,
    s3_get: 0.0004 / 1_000.0,
    dynamodb_write_request: 0.625 / 1_000_000.0,
    dynamodb_read_request: 0.125 / 1_000_000.0,
    iot_registry_operation: 1.25 / 1_000_000.0,
};

/// Express workflows are billed in 64 MB steps; a child that only calls two Lambdas needs the
/// smallest.
pub const EXPRESS_MEMORY_MB: f64 = 64.0;

/// The four functions, in pipeline order.
pub const FUNCTIONS: [&str; 4] = ["split", "decorate", "register", "summarize"];

/// Certificates per second one Register child reached on the local stack (the README's ×20
/// run: "Each child ran 4.6 certificates/s here", behind moto's IoT ceiling). The stack's
/// `ChildCapacity` (Split's [`crate::settings::DEFAULT_CHILD_CAPACITY`]) is the estimate for AWS.
pub const LOCAL_CHILD_CAPACITY: f64 = 4.6;

/// A STANDARD child's Register hands its chunk back (`done: false`) after this long, and the
/// ASL loops Register → RegisterDone → RegisterPause: three transitions per time-box.
pub const TIME_BOX_SECONDS: f64 = 300.0;
/// State transitions of one continuation (Register, RegisterDone, RegisterPause).
pub const TRANSITIONS_PER_CONTINUATION: f64 = 3.0;
/// A budget holder writes its lease and Query-reads the table once per heartbeat.
pub const HEARTBEAT_SECONDS: f64 = 3.0;
/// Entries per chunk before issue 12 when the profile did not set one (the template's ChunkSize).
pub const STATIC_CHUNK_SIZE: u32 = 500;

/// Lambda memory per function in infra/template.yaml (tests/cost.rs holds the two equal).
pub const TEMPLATE_MEMORY_MB: [(&str, f64); 4] = [
    ("split", 2048.0),
    ("decorate", 512.0),
    ("register", 256.0),
    ("summarize", 512.0),
];

/// [`TEMPLATE_MEMORY_MB`] as a map.
pub fn template_memory_mb() -> BTreeMap<String, f64> {
    TEMPLATE_MEMORY_MB
        .iter()
        .map(|(f, mb)| ((*f).to_owned(), *mb))
        .collect()
}

/// One measured run, as `bench_e2e` reads it from the edge, the report and the history.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Measured {
    /// Manifest entries.
    pub entries: u64,
    /// Chunks in the run's index.
    pub chunks: u64,
    /// Entries per chunk in that run.
    pub chunk_size: u64,
    /// Lambda invocations per function (retries included).
    pub invocations: BTreeMap<String, u64>,
    /// Split's seconds (one invocation, whole manifest).
    pub split_seconds: f64,
    /// Decorate's seconds per chunk (warm invocation).
    pub decorate_seconds_per_chunk: f64,
    /// Summarize's seconds (one invocation, every chunk).
    pub summarize_seconds: f64,
    /// Achieved RegisterCertificateWithoutCA rate ÷ the paced rate (quota less the reserve):
    /// how close to its pacing target the pipeline ran.
    pub achieved_fraction_of_paced: f64,
    /// State transitions of the parent execution, counted in its history.
    pub parent_transitions: u64,
    /// S3 GET/HEAD requests by the functions (the edge's count).
    pub s3_get: u64,
    /// S3 PUT/LIST/POST requests by the functions (the edge's count).
    pub s3_put: u64,
    /// Policies and groups per thing in the profile (they set the slowest API).
    pub policies: usize,
    /// See `policies`.
    pub groups: usize,
}

/// The README's ×1.5 end-to-end run (10,000 certificates, chunks of 500, 4 children, 13.4 of a
/// paced 13.5 certificates/s), which `thingpress plan` projects from when no run of its own is
/// at hand, and which gave the $8.28 per 1,000,000 of the model before issue 12.
pub fn reference_run() -> Measured {
    Measured {
        entries: 10_000,
        chunks: 20,
        chunk_size: 500,
        invocations: [
            ("split", 1),
            ("decorate", 20),
            ("register", 24),
            ("summarize", 1),
        ]
        .into_iter()
        .map(|(f, n)| (f.to_owned(), n))
        .collect(),
        split_seconds: 15.6,
        decorate_seconds_per_chunk: 0.04,
        summarize_seconds: 0.4,
        // 13.4 of 13.5/s as rounded in the README; its projections used 7.95 of a paced 8/s.
        achieved_fraction_of_paced: 7.95 / 8.0,
        parent_transitions: 5,
        s3_get: 205,
        s3_put: 93,
        policies: 1,
        groups: 1,
    }
}

/// Which pipeline a projection prices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Pipeline {
    /// Before issue 12: each child paced at its 1/MaxConcurrency share, a chunk capped to
    /// finish in half of Register's timeout, no continuations, no lease table.
    Static,
    /// Issue 12: the children share one budget (leases in DynamoDB), a STANDARD chunk is sized
    /// by time and continues past the time-box.
    Budget,
}

/// Where the projection is deployed.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// A name for tables ("AWS defaults", "raised ×10").
    pub label: String,
    /// Certificates to import.
    pub certificates: u64,
    /// Account quotas per API, requests/s (IoT names); missing APIs use AWS's defaults.
    pub quotas: BTreeMap<String, f64>,
    /// QuotaReserve: the share of each quota left to the account's other callers.
    pub quota_reserve: f64,
    /// The profile's maxConcurrency (before issue 12: the stack's MaxConcurrency, required).
    pub max_concurrency: Option<u32>,
    /// The stack's MaxConcurrency: 0 sizes the children from the budget (Split's
    /// `Settings::max_concurrency`).
    pub stack_max_concurrency: u32,
    /// Certificates per second one child reaches without waiting for tokens (ChildCapacity).
    pub child_capacity: f64,
    /// Entries per chunk: the profile's, else the stack's ChunkSize, else Split's default.
    pub chunk_size: Option<u32>,
    /// Children are EXPRESS (Register's timeout 110 s, infra/template.yaml) rather than STANDARD (900 s).
    pub express: bool,
    /// Lambda memory per function, MB (infra/template.yaml).
    pub memory_mb: BTreeMap<String, f64>,
    /// The pipeline priced.
    pub pipeline: Pipeline,
}

/// What is billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Service {
    /// AWS Lambda.
    Lambda,
    /// AWS Step Functions.
    StepFunctions,
    /// Amazon S3.
    S3,
    /// Amazon DynamoDB (the budget's lease table).
    DynamoDB,
    /// AWS IoT Core's registry: billed to the account whoever registers, so listed apart.
    IoT,
}

impl Service {
    /// The name in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Lambda => "Lambda",
            Service::StepFunctions => "Step Functions",
            Service::S3 => "S3",
            Service::DynamoDB => "DynamoDB",
            Service::IoT => "IoT Core",
        }
    }
}

/// One line of the bill.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    /// The service billing it.
    pub service: Service,
    /// What is billed.
    pub what: String,
    /// How many units.
    pub quantity: f64,
    /// The unit.
    pub unit: &'static str,
    /// USD.
    pub usd: f64,
}

/// A projection of one deployment.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Projection {
    /// The deployment.
    pub deployment: Deployment,
    /// Children running at once.
    pub children: u32,
    /// Entries per chunk.
    pub chunk_size: u32,
    /// Chunks.
    pub chunks: u64,
    /// Certificates per second the quotas less the reserve allow (the slowest API).
    pub paced_per_second: f64,
    /// Certificates per second expected (paced × the measured achieved fraction).
    pub expected_per_second: f64,
    /// Wall-clock seconds: Split + registration + Summarize.
    pub wall_clock_seconds: f64,
    /// Register invocations that hand a chunk back at the time-box to carry on.
    pub continuations: f64,
    /// The bill of Lambda, Step Functions, S3 and DynamoDB.
    pub items: Vec<Item>,
    /// Sum of `items`.
    pub total_usd: f64,
    /// AWS IoT Core's registry charges, apart from the total.
    pub iot_items: Vec<Item>,
    /// Sum of `iot_items`.
    pub iot_usd: f64,
}

impl Projection {
    /// USD per service of `items`, in [`Service`] order.
    pub fn by_service(&self) -> BTreeMap<Service, f64> {
        let mut out = BTreeMap::new();
        for i in &self.items {
            *out.entry(i.service).or_insert(0.0) += i.usd;
        }
        out
    }
}

/// AWS's default quotas (requests/s) per IoT API, from the importer's catalogue (the template's
/// parameters default to the same, tests/template.rs checks).
pub fn default_quotas() -> BTreeMap<String, f64> {
    Api::ALL
        .iter()
        .map(|api| (api.as_str().to_owned(), api.default_quota()))
        .collect()
}

/// The deployment's quota of one API: its own, or AWS's default.
fn quota(d: &Deployment, api: Api) -> f64 {
    d.quotas
        .get(api.as_str())
        .copied()
        .unwrap_or_else(|| api.default_quota())
}

/// Certificates per second the quotas allow: the slowest API's quota less the reserve ÷ its
/// calls per new certificate (the importer's catalogue says which APIs and how often).
pub fn paced_per_second(d: &Deployment, policies: usize, groups: usize) -> f64 {
    new_certificates_per_second(
        |api| quota(d, api) * (1.0 - d.quota_reserve),
        policies,
        groups,
    )
}

/// Split's settings for a deployment (issue 12's sizing).
fn settings(d: &Deployment) -> Result<Settings, String> {
    let mut env: BTreeMap<String, String> = [
        ("IMPORT_BUCKET", "cost-model".to_owned()),
        (RESERVE_ENV_VAR, d.quota_reserve.to_string()),
        (MAX_CONCURRENCY_ENV_VAR, d.stack_max_concurrency.to_string()),
        (CHILD_CAPACITY_ENV_VAR, d.child_capacity.to_string()),
        (
            REGISTER_TIMEOUT_ENV_VAR,
            if d.express { "110" } else { "900" }.to_owned(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    env.extend(Api::ALL.map(|api| (api.quota_env_var().to_owned(), quota(d, api).to_string())));
    Settings::from_lookup(|name| env.get(name).cloned())
}

/// Children and entries per chunk. Issue 12: as Split sizes them (`Settings`). Before it: the
/// fixed MaxConcurrency, and a chunk capped so one child, paced at its 1/MaxConcurrency share,
/// registers it in half of Register's timeout.
pub fn sizes(d: &Deployment, policies: usize, groups: usize) -> Result<(u32, u32), String> {
    match d.pipeline {
        Pipeline::Budget => {
            let s = settings(d)?;
            let children = s.max_concurrency(d.max_concurrency, policies, groups);
            let chunk = s.chunk_size(d.chunk_size, children, policies, groups);
            Ok((children, chunk))
        }
        Pipeline::Static => {
            let children = d
                .max_concurrency
                .ok_or("before issue 12 MaxConcurrency is fixed: set max_concurrency")?
                .max(1);
            let per_child = paced_per_second(d, policies, groups) / f64::from(children);
            let timeout = if d.express { 110.0 } else { 900.0 };
            let cap = (per_child * timeout / 2.0).floor();
            let requested = d.chunk_size.unwrap_or(STATIC_CHUNK_SIZE);
            let chunk = if cap.is_finite() && cap < f64::from(requested) {
                // Below a u32 here, so the cast cannot truncate.
                (cap as u32).max(1)
            } else {
                requested
            };
            Ok((children, chunk))
        }
    }
}

/// Projects the measured run onto a deployment.
pub fn project(m: &Measured, d: &Deployment, prices: &Prices) -> Result<Projection, String> {
    if m.entries == 0 || m.chunks == 0 || m.chunk_size == 0 {
        return Err("the measured run has no entries or no chunks".into());
    }
    if !(0.0..1.0).contains(&d.quota_reserve) {
        return Err(format!("QuotaReserve {} is not in [0, 1)", d.quota_reserve));
    }
    let paced = paced_per_second(d, m.policies, m.groups);
    if !(paced.is_finite() && paced > 0.0) {
        return Err("the quotas allow no certificates per second".into());
    }
    let (sized, chunk_size) = sizes(d, m.policies, m.groups)?;
    let n = d.certificates as f64;
    let chunks = d.certificates.div_ceil(u64::from(chunk_size.max(1)));
    let per_entry = n / m.entries as f64;
    let per_chunk = chunks as f64 / m.chunks as f64;
    let fraction = m.achieved_fraction_of_paced.clamp(0.01, 1.0);
    let expected = paced * fraction;
    let registering = n / expected;
    let split_seconds = m.split_seconds * per_entry;
    let summarize_seconds = m.summarize_seconds * per_entry;
    let wall_clock_seconds = split_seconds + registering + summarize_seconds;

    // Every child running is busy (billed) for the whole registration phase.
    let children = u64::from(sized).min(chunks).max(1);
    let register_seconds = registering * children as f64;
    let decorate_seconds =
        m.decorate_seconds_per_chunk * chunks as f64 * f64::from(chunk_size) / m.chunk_size as f64;
    let continuations = if d.pipeline == Pipeline::Budget && !d.express {
        // A chunk takes its entries ÷ the child's share; each time-box it outlasts is one more.
        let chunk_seconds = f64::from(chunk_size) * children as f64 / expected;
        chunks as f64 * ((chunk_seconds / TIME_BOX_SECONDS).ceil() - 1.0).max(0.0)
    } else {
        0.0
    };
    let seconds: BTreeMap<&str, f64> = [
        ("split", split_seconds),
        ("decorate", decorate_seconds),
        ("register", register_seconds),
        ("summarize", summarize_seconds),
    ]
    .into_iter()
    .collect();
    let invocation = |f: &str| m.invocations.get(f).copied().unwrap_or(0) as f64;
    // Split and Summarize run once per run; Decorate and Register once per chunk plus the
    // retries measured per chunk, and Register once more per continuation.
    let requests = invocation("split")
        + invocation("summarize")
        + (invocation("decorate") + invocation("register")) * per_chunk
        + continuations;
    let mut items = lambda_items(d, prices, &seconds, requests)?;
    let retries = (invocation("decorate") + invocation("register") - 2.0 * m.chunks as f64)
        .max(0.0)
        * per_chunk;
    items.extend(step_functions_items(
        m,
        d,
        prices,
        chunks,
        register_seconds + decorate_seconds,
        retries + continuations * TRANSITIONS_PER_CONTINUATION,
    ));
    items.extend(s3_items(m, prices, per_chunk));
    if d.pipeline == Pipeline::Budget {
        items.extend(dynamodb_items(prices, register_seconds));
    }
    let total_usd = items.iter().map(|i| i.usd).sum();
    let iot_items = iot_items(prices, n, m.groups);
    let iot_usd = iot_items.iter().map(|i| i.usd).sum();
    Ok(Projection {
        deployment: d.clone(),
        children: u32::try_from(children).unwrap_or(u32::MAX),
        chunk_size,
        chunks,
        paced_per_second: paced,
        expected_per_second: expected,
        wall_clock_seconds,
        continuations,
        items,
        total_usd,
        iot_items,
        iot_usd,
    })
}

/// What Lambda bills for the projected run: each function's GB-seconds and the requests.
fn lambda_items(
    d: &Deployment,
    prices: &Prices,
    seconds: &BTreeMap<&str, f64>,
    requests: f64,
) -> Result<Vec<Item>, String> {
    let mut items = Vec::new();
    for f in FUNCTIONS {
        let memory = d
            .memory_mb
            .get(f)
            .copied()
            .ok_or_else(|| format!("no memory size for {f}"))?;
        let gbs = seconds.get(f).copied().unwrap_or(0.0) * memory / 1024.0;
        items.push(Item {
            service: Service::Lambda,
            what: format!("Lambda {f} duration ({memory} MB, arm64)"),
            quantity: gbs,
            unit: "GB-s",
            usd: gbs * prices.lambda_arm64_gb_second,
        });
    }
    items.push(Item {
        service: Service::Lambda,
        what: "Lambda requests".into(),
        quantity: requests,
        unit: "requests",
        usd: requests * prices.lambda_request,
    });
    Ok(items)
}

/// What S3 bills for the projected run: the requests, scaled from the measured run per chunk.
fn s3_items(m: &Measured, prices: &Prices, per_chunk: f64) -> Vec<Item> {
    let s3_put = m.s3_put as f64 * per_chunk;
    let s3_get = m.s3_get as f64 * per_chunk;
    vec![
        Item {
            service: Service::S3,
            what: "S3 PUT/LIST requests".into(),
            quantity: s3_put,
            unit: "requests",
            usd: s3_put * prices.s3_put,
        },
        Item {
            service: Service::S3,
            what: "S3 GET/HEAD requests".into(),
            quantity: s3_get,
            unit: "requests",
            usd: s3_get * prices.s3_get,
        },
    ]
}

/// What the budget's lease table bills: per running child, one write and one Query (a read
/// request unit: a handful of small items) per heartbeat.
fn dynamodb_items(prices: &Prices, register_seconds: f64) -> Vec<Item> {
    let heartbeats = register_seconds / HEARTBEAT_SECONDS;
    vec![
        Item {
            service: Service::DynamoDB,
            what: format!("DynamoDB lease writes (one per child per {HEARTBEAT_SECONDS} s)"),
            quantity: heartbeats,
            unit: "WRU",
            usd: heartbeats * prices.dynamodb_write_request,
        },
        Item {
            service: Service::DynamoDB,
            what: format!("DynamoDB lease reads (one Query per child per {HEARTBEAT_SECONDS} s)"),
            quantity: heartbeats,
            unit: "RRU",
            usd: heartbeats * prices.dynamodb_read_request,
        },
    ]
}

/// AWS IoT Core's registry operations per new certificate: CreateThing, AttachThingPrincipal
/// and AddThingToThingGroup per group.
fn iot_items(prices: &Prices, n: f64, groups: usize) -> Vec<Item> {
    let registry = n * (2.0 + groups as f64);
    vec![Item {
        service: Service::IoT,
        what: "IoT Core registry operations (CreateThing, AttachThingPrincipal, AddThingToThingGroup per group)"
            .into(),
        quantity: registry,
        unit: "operations",
        usd: registry * prices.iot_registry_operation,
    }]
}

/// What Step Functions bills for the projected run: the parent's transitions and, per chunk,
/// an EXPRESS child's request and duration or a STANDARD child's transitions. `extra` are the
/// STANDARD children's further transitions (retries, continuations).
fn step_functions_items(
    m: &Measured,
    d: &Deployment,
    prices: &Prices,
    chunks: u64,
    children_seconds: f64,
    extra: f64,
) -> Vec<Item> {
    let mut items = Vec::new();
    if d.express {
        // The parent's states, plus one transition per child started; children bill per request
        // and duration (Decorate + Register of one chunk).
        let transitions = m.parent_transitions as f64 + chunks as f64;
        items.push(Item {
            service: Service::StepFunctions,
            what: "Step Functions Standard transitions (parent, one per child started)".into(),
            quantity: transitions,
            unit: "transitions",
            usd: transitions * prices.standard_transition,
        });
        items.push(Item {
            service: Service::StepFunctions,
            what: "Step Functions Express requests (children)".into(),
            quantity: chunks as f64,
            unit: "requests",
            usd: chunks as f64 * prices.express_request,
        });
        let child_seconds = children_seconds / chunks.max(1) as f64;
        let gbs = chunks as f64 * child_seconds * EXPRESS_MEMORY_MB / 1024.0;
        items.push(Item {
            service: Service::StepFunctions,
            what: format!("Step Functions Express duration ({EXPRESS_MEMORY_MB} MB)"),
            quantity: gbs,
            unit: "GB-s",
            usd: gbs * prices.express_gb_second,
        });
    } else {
        // Per STANDARD child: its start (billed to the Map) + Decorate + Register, then retries
        // and continuations.
        let transitions = m.parent_transitions as f64 + chunks as f64 * 3.0 + extra;
        items.push(Item {
            service: Service::StepFunctions,
            what: "Step Functions Standard transitions".into(),
            quantity: transitions,
            unit: "transitions",
            usd: transitions * prices.standard_transition,
        });
    }
    items
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn deployment() -> Deployment {
        Deployment {
            label: "t".into(),
            certificates: 1_000_000,
            quotas: default_quotas(),
            quota_reserve: 0.1,
            max_concurrency: None,
            stack_max_concurrency: 0,
            child_capacity: 4.0,
            chunk_size: None,
            express: false,
            memory_mb: template_memory_mb(),
            pipeline: Pipeline::Budget,
        }
    }

    #[test]
    fn issue_12_sizes_as_split_does() {
        // 9/s at 4/s a child: 3 children; Split's default 2,000 capped at 3/s × 450 s.
        assert_eq!(sizes(&deployment(), 1, 1).unwrap(), (3, 1_350));
        let d = Deployment {
            child_capacity: 20.0,
            ..deployment()
        };
        assert_eq!(sizes(&d, 1, 1).unwrap(), (1, 2_000));
        let fixed = Deployment {
            max_concurrency: Some(2),
            chunk_size: Some(50),
            ..deployment()
        };
        assert_eq!(sizes(&fixed, 1, 1).unwrap(), (2, 50));
        let stack = Deployment {
            stack_max_concurrency: 7,
            ..deployment()
        };
        assert_eq!(sizes(&stack, 1, 1).unwrap().0, 7);
        let unset = Deployment {
            pipeline: Pipeline::Static,
            ..deployment()
        };
        assert!(sizes(&unset, 1, 1).is_err());
    }

    #[test]
    fn the_lease_table_bills_two_requests_per_child_heartbeat() {
        let p = project(&reference_run(), &deployment(), &PRICES).unwrap();
        // 9/s over capacity 4: 3 children, each billed the whole registration.
        assert_eq!(p.children, 3);
        let registering = 1_000_000.0 / p.expected_per_second;
        let writes = p.items.iter().find(|i| i.unit == "WRU").unwrap();
        assert!((writes.quantity - registering * 3.0 / 3.0).abs() < 1e-6);
        assert!(p.iot_items.iter().all(|i| i.service == Service::IoT));
        assert!(p.items.iter().all(|i| i.service != Service::IoT));
        let by_service: f64 = p.by_service().values().sum();
        assert!((by_service - p.total_usd).abs() < 1e-9);
    }

    #[test]
    fn long_chunks_continue_every_time_box() {
        // One child at 9 × 0.99375/s: a 2,000-entry chunk takes ~224 s, no continuation; a
        // fixed 4,000-entry chunk (under the 4,050 cap) ~447 s: one continuation each.
        let d = Deployment {
            child_capacity: 100.0,
            chunk_size: Some(4_000),
            ..deployment()
        };
        let p = project(&reference_run(), &d, &PRICES).unwrap();
        assert_eq!((p.children, p.chunk_size, p.chunks), (1, 4_000, 250));
        assert!(
            (p.continuations - 250.0).abs() < 1e-9,
            "{}",
            p.continuations
        );
        let auto = project(
            &reference_run(),
            &Deployment {
                child_capacity: 100.0,
                ..deployment()
            },
            &PRICES,
        )
        .unwrap();
        assert_eq!(auto.chunk_size, 2_000);
        assert_eq!(auto.continuations, 0.0);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let mut m = reference_run();
        m.chunks = 0;
        assert!(project(&m, &deployment(), &PRICES).is_err());
        let d = Deployment {
            quota_reserve: 1.0,
            ..deployment()
        };
        assert!(project(&reference_run(), &d, &PRICES).is_err());
        let d = Deployment {
            memory_mb: BTreeMap::new(),
            ..deployment()
        };
        assert!(project(&reference_run(), &d, &PRICES).is_err());
    }
}
