//! What an import costs and how long it takes, projected from one measured local run
//! (`script/bench --e2e`) to any certificate count, quotas and concurrency. The unit prices live
//! here and nowhere else.
//!
//! Register paces every IoT call, so its billed time is mostly waiting for tokens: the total is
//! certificates × concurrency ÷ achieved rate, whatever the chunk size. The rest (Split,
//! Decorate, Summarize, S3 requests, state transitions) scales with entries or chunks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thingpress_importer::{Api, RESERVE_ENV_VAR, new_certificates_per_second};
use thingpress_run::Settings;

/// AWS unit prices, us-east-1, first tier (USD).
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Prices {
    /// When the prices were recorded (aws.amazon.com/{lambda,step-functions,s3}/pricing; not
    /// re-read from the build machine, which has no route to it).
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
    /// AWS IoT Core registry operation (CreateThing, AttachThingPrincipal and
    /// AddThingToThingGroup are metered as such), per operation. From the IoT Core pricing page
    /// as remembered, not re-read on that date: check it before quoting.
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
    iot_registry_operation: 1.25 / 1_000_000.0,
};

/// Express workflows are billed in 64 MB steps; a child that only calls two Lambdas needs the
/// smallest.
pub const EXPRESS_MEMORY_MB: f64 = 64.0;

/// The four functions, in pipeline order.
pub const FUNCTIONS: [&str; 4] = ["split", "decorate", "register", "summarize"];

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
    /// Achieved RegisterCertificateWithoutCA rate ÷ the paced rate (quota × reserve):
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
    /// QuotaReserve.
    pub quota_reserve: f64,
    /// MaxConcurrency.
    pub max_concurrency: u32,
    /// ChunkSize (before the cap).
    pub chunk_size: u32,
    /// Children are EXPRESS (Register's timeout 110 s, infra/template.yaml) rather than STANDARD (900 s).
    pub express: bool,
    /// Lambda memory per function, MB (infra/template.yaml).
    pub memory_mb: BTreeMap<String, f64>,
}

/// One line of the bill.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
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
    /// Entries per chunk after the timeout cap.
    pub chunk_size: u32,
    /// Chunks.
    pub chunks: u64,
    /// Certificates per second the quotas allow (paced rate of the slowest API).
    pub paced_per_second: f64,
    /// Certificates per second expected (paced × the measured achieved fraction).
    pub expected_per_second: f64,
    /// Wall-clock seconds: Split + registration + Summarize.
    pub wall_clock_seconds: f64,
    /// The bill.
    pub items: Vec<Item>,
    /// Sum of the bill.
    pub total_usd: f64,
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

/// The pipeline's settings for a deployment (for its chunk-size cap).
fn settings(d: &Deployment) -> Result<Settings, String> {
    let mut env: BTreeMap<String, String> = [
        ("IMPORT_BUCKET".to_owned(), "cost-model".to_owned()),
        (
            RESERVE_ENV_VAR.to_owned(),
            d.quota_reserve.to_string(),
        ),
        (
            "REGISTER_TIMEOUT_SECONDS".to_owned(),
            if d.express { "110" } else { "900" }.to_owned(),
        ),
    ]
    .into_iter()
    .collect();
    env.extend(Api::ALL.map(|api| (api.quota_env_var().to_owned(), quota(d, api).to_string())));
    Settings::from_lookup(|name| env.get(name).cloned())
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

/// Projects the measured run onto a deployment.
pub fn project(m: &Measured, d: &Deployment, prices: &Prices) -> Result<Projection, String> {
    if m.entries == 0 || m.chunks == 0 {
        return Err("the measured run has no entries or no chunks".into());
    }
    let chunk_size =
        settings(d)?.chunk_size(Some(d.chunk_size), d.max_concurrency, m.policies, m.groups);
    let n = d.certificates as f64;
    let chunks = d.certificates.div_ceil(u64::from(chunk_size.max(1)));
    let per_entry = n / m.entries as f64;
    let per_chunk = chunks as f64 / m.chunks as f64;
    let paced = paced_per_second(d, m.policies, m.groups);
    let fraction = m.achieved_fraction_of_paced.clamp(0.01, 1.0);
    let expected = paced * fraction;
    let registering = n / expected;
    let split_seconds = m.split_seconds * per_entry;
    let summarize_seconds = m.summarize_seconds * per_entry;
    let wall_clock_seconds = split_seconds + registering + summarize_seconds;

    // Each of the (at most) MaxConcurrency children is busy for the whole registration phase.
    let children = f64::from(d.max_concurrency).min(chunks as f64);
    let register_seconds = registering * children;
    let decorate_seconds =
        m.decorate_seconds_per_chunk * chunks as f64 * f64::from(chunk_size) / m.chunk_size as f64;
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
    // retries measured per chunk.
    let requests = invocation("split")
        + invocation("summarize")
        + (invocation("decorate") + invocation("register")) * per_chunk;
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
        retries,
    ));
    items.extend(storage_and_registry_items(m, prices, per_chunk, n));
    let total_usd = items.iter().map(|i| i.usd).sum();
    Ok(Projection {
        deployment: d.clone(),
        chunk_size,
        chunks,
        paced_per_second: paced,
        expected_per_second: expected,
        wall_clock_seconds,
        items,
        total_usd,
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
            what: format!("Lambda {f} duration ({memory} MB, arm64)"),
            quantity: gbs,
            unit: "GB-s",
            usd: gbs * prices.lambda_arm64_gb_second,
        });
    }
    items.push(Item {
        what: "Lambda requests".into(),
        quantity: requests,
        unit: "requests",
        usd: requests * prices.lambda_request,
    });
    Ok(items)
}

/// What S3 (requests, scaled from the measured run per chunk) and the IoT registry (per
/// certificate) bill for the projected run.
fn storage_and_registry_items(m: &Measured, prices: &Prices, per_chunk: f64, n: f64) -> Vec<Item> {
    let mut items = Vec::new();
    let s3_put = m.s3_put as f64 * per_chunk;
    let s3_get = m.s3_get as f64 * per_chunk;
    items.push(Item {
        what: "S3 PUT/LIST requests".into(),
        quantity: s3_put,
        unit: "requests",
        usd: s3_put * prices.s3_put,
    });
    items.push(Item {
        what: "S3 GET/HEAD requests".into(),
        quantity: s3_get,
        unit: "requests",
        usd: s3_get * prices.s3_get,
    });
    // CreateThing + AttachThingPrincipal + AddThingToThingGroup per group, per certificate.
    let registry = n * (2.0 + m.groups as f64);
    items.push(Item {
        what: "IoT Core registry operations".into(),
        quantity: registry,
        unit: "operations",
        usd: registry * prices.iot_registry_operation,
    });
    items
}

/// What Step Functions bills for the projected run: the parent's transitions and, per chunk,
/// an EXPRESS child's request and duration or a STANDARD child's transitions.
fn step_functions_items(
    m: &Measured,
    d: &Deployment,
    prices: &Prices,
    chunks: u64,
    children_seconds: f64,
    retries: f64,
) -> Vec<Item> {
    let mut items = Vec::new();
    if d.express {
        // The parent's states, plus one transition per child started; children bill per request
        // and duration (Decorate + Register of one chunk).
        let transitions = m.parent_transitions as f64 + chunks as f64;
        items.push(Item {
            what: "Step Functions Standard transitions (parent, one per child started)".into(),
            quantity: transitions,
            unit: "transitions",
            usd: transitions * prices.standard_transition,
        });
        items.push(Item {
            what: "Step Functions Express requests (children)".into(),
            quantity: chunks as f64,
            unit: "requests",
            usd: chunks as f64 * prices.express_request,
        });
        let child_seconds = children_seconds / chunks.max(1) as f64;
        let gbs = chunks as f64 * child_seconds * EXPRESS_MEMORY_MB / 1024.0;
        items.push(Item {
            what: format!("Step Functions Express duration ({EXPRESS_MEMORY_MB} MB)"),
            quantity: gbs,
            unit: "GB-s",
            usd: gbs * prices.express_gb_second,
        });
    } else {
        // Per STANDARD child: its start (billed to the Map) + Decorate + Register + retries.
        let transitions = m.parent_transitions as f64 + chunks as f64 * 3.0 + retries;
        items.push(Item {
            what: "Step Functions Standard transitions".into(),
            quantity: transitions,
            unit: "transitions",
            usd: transitions * prices.standard_transition,
        });
    }
    items
}

/// Lambda memory sizes per function from the SAM template's text: each `<Name>Function`
/// resource's `MemorySize`, else `Globals.Function.MemorySize`.
pub fn memory_from_template(
    template: &serde_norway::Value,
) -> Result<BTreeMap<String, f64>, String> {
    let global = template
        .get("Globals")
        .and_then(|g| g.get("Function"))
        .and_then(|f| f.get("MemorySize"))
        .and_then(serde_norway::Value::as_f64);
    let resources = template
        .get("Resources")
        .ok_or("the template has no Resources")?;
    let mut out = BTreeMap::new();
    for f in FUNCTIONS {
        let mut id = f.to_owned();
        if let Some(first) = id.get_mut(..1) {
            first.make_ascii_uppercase();
        }
        let id = format!("{id}Function");
        let resource = resources
            .get(id.as_str())
            .ok_or_else(|| format!("the template has no {id}"))?;
        let memory = resource
            .get("Properties")
            .and_then(|p| p.get("MemorySize"))
            .and_then(serde_norway::Value::as_f64)
            .or(global)
            .ok_or_else(|| format!("{id} has no MemorySize and there is no global one"))?;
        out.insert(f.to_owned(), memory);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn measured() -> Measured {
        Measured {
            entries: 10_000,
            chunks: 20,
            chunk_size: 500,
            invocations: [
                ("split", 1),
                ("decorate", 20),
                ("register", 22),
                ("summarize", 1),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
            split_seconds: 2.0,
            decorate_seconds_per_chunk: 0.5,
            summarize_seconds: 1.0,
            achieved_fraction_of_paced: 0.5,
            parent_transitions: 4,
            s3_get: 200,
            s3_put: 100,
            policies: 1,
            groups: 1,
        }
    }

    fn deployment(register_quota: f64, express: bool) -> Deployment {
        Deployment {
            label: "t".into(),
            certificates: 1_000_000,
            quotas: [("RegisterCertificateWithoutCA".to_owned(), register_quota)].into(),
            quota_reserve: 0.2,
            max_concurrency: 10,
            chunk_size: 500,
            express,
            memory_mb: FUNCTIONS.iter().map(|f| (f.to_string(), 1024.0)).collect(),
        }
    }

    #[test]
    fn register_time_is_the_paced_wait_of_every_child() {
        let p = project(&measured(), &deployment(10.0, false), &PRICES).unwrap();
        // 10/s × 0.8 = 8/s paced, half achieved: 4/s → 250,000 s of registration.
        assert_eq!(p.paced_per_second, 8.0);
        assert_eq!(p.expected_per_second, 4.0);
        // Chunk cap: 0.8/s per child × 450 s = 360 entries → 2,778 chunks.
        assert_eq!(p.chunk_size, 360);
        assert_eq!(p.chunks, 2_778);
        assert!((p.wall_clock_seconds - (200.0 + 250_000.0 + 100.0)).abs() < 1e-6);
        let register = p
            .items
            .iter()
            .find(|i| i.what.contains("register"))
            .unwrap();
        assert!(
            (register.quantity - 2_500_000.0).abs() < 1e-6,
            "{register:?}"
        );
        let transitions = p.items.iter().find(|i| i.unit == "transitions").unwrap();
        // 4 + 3 per chunk + 2 retries per 20 chunks.
        let want = 4.0 + 3.0 * 2_778.0 + 2.0 * 2_778.0 / 20.0;
        assert!(
            (transitions.quantity - want).abs() < 1e-6,
            "{transitions:?}"
        );
        assert!((p.total_usd - p.items.iter().map(|i| i.usd).sum::<f64>()).abs() < 1e-12);
    }

    #[test]
    fn raised_quotas_shorten_the_run_and_its_register_bill() {
        let low = project(&measured(), &deployment(10.0, false), &PRICES).unwrap();
        let mut raised = deployment(10.0, false);
        raised.quotas = default_quotas()
            .into_iter()
            .map(|(k, v)| (k, v * 10.0))
            .collect();
        let high = project(&measured(), &raised, &PRICES).unwrap();
        assert_eq!(high.paced_per_second, 80.0);
        assert!(high.wall_clock_seconds < low.wall_clock_seconds / 5.0);
        assert!(high.total_usd < low.total_usd);
    }

    #[test]
    fn raising_one_quota_moves_the_bottleneck() {
        // RegisterCertificateWithoutCA at 100/s: AttachPolicy (15/s × 0.8) limits instead.
        let p = project(&measured(), &deployment(100.0, false), &PRICES).unwrap();
        assert!(
            (p.paced_per_second - 12.0).abs() < 1e-9,
            "{}",
            p.paced_per_second
        );
    }

    #[test]
    fn express_children_bill_requests_and_duration() {
        let p = project(&measured(), &deployment(10.0, true), &PRICES).unwrap();
        // 110 s timeout: 0.8/s × 55 s = 44 entries per chunk.
        assert_eq!(p.chunk_size, 44);
        assert!(p.items.iter().any(|i| i.what.contains("Express requests")));
        assert!(p.items.iter().any(|i| i.what.contains("Express duration")));
    }

    #[test]
    fn an_empty_run_cannot_be_projected() {
        let mut m = measured();
        m.chunks = 0;
        assert!(project(&m, &deployment(10.0, false), &PRICES).is_err());
    }

    #[test]
    fn memory_sizes_come_from_the_template() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let text = std::fs::read_to_string(root.join("infra/template.yaml")).unwrap();
        let template: serde_norway::Value = serde_norway::from_str(&text).unwrap();
        let memory = memory_from_template(&template).unwrap();
        assert_eq!(memory.len(), 4);
        assert!(memory.values().all(|m| *m >= 128.0), "{memory:?}");
    }
}
