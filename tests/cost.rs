//! The cost model (`thingpress_run::cost`, re-exported here for `bench_e2e` and the tests) held
//! against what it must reproduce: the template's memory sizes, the $8.28 per 1,000,000
//! certificates of the pipeline before issue 12, and what issue 12's sizing makes of it.

use std::collections::BTreeMap;

pub use thingpress_run::cost::*;

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

/// Today's (before issue 12) deployment of the README's projections: MaxConcurrency 10, a fifth
/// of every quota left unused (reserve 0.2, the old safety factor 0.8), chunks of 500 capped.
pub fn static_deployment(label: &str, scale: f64, express: bool) -> Deployment {
    Deployment {
        label: label.to_owned(),
        certificates: 1_000_000,
        quotas: default_quotas()
            .into_iter()
            .map(|(k, v)| (k, v * scale))
            .collect(),
        quota_reserve: 0.2,
        max_concurrency: Some(10),
        stack_max_concurrency: 10,
        child_capacity: LOCAL_CHILD_CAPACITY,
        chunk_size: Some(500),
        express,
        memory_mb: template_memory_mb(),
        pipeline: Pipeline::Static,
    }
}

/// Issue 12's deployment at the template's defaults: reserve 0.1, MaxConcurrency 0 (children
/// sized from the budget ÷ `child_capacity`), Split's default chunk size.
pub fn budget_deployment(label: &str, scale: f64, child_capacity: f64) -> Deployment {
    Deployment {
        quota_reserve: 0.1,
        max_concurrency: None,
        stack_max_concurrency: 0,
        child_capacity,
        chunk_size: None,
        pipeline: Pipeline::Budget,
        ..static_deployment(label, scale, false)
    }
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
            max_concurrency: Some(10),
            stack_max_concurrency: 10,
            child_capacity: LOCAL_CHILD_CAPACITY,
            chunk_size: Some(500),
            express,
            memory_mb: FUNCTIONS.iter().map(|f| (f.to_string(), 1024.0)).collect(),
            pipeline: Pipeline::Static,
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
        // Before issue 12: no lease table, no continuations.
        assert!(p.items.iter().all(|i| i.service != Service::DynamoDB));
        assert_eq!(p.continuations, 0.0);
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

    fn template_memory() -> BTreeMap<String, f64> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let text = std::fs::read_to_string(root.join("infra/template.yaml")).unwrap();
        let template: serde_norway::Value = serde_norway::from_str(&text).unwrap();
        memory_from_template(&template).unwrap()
    }

    #[test]
    fn memory_sizes_come_from_the_template() {
        let memory = template_memory();
        assert_eq!(memory.len(), 4);
        assert!(memory.values().all(|m| *m >= 128.0), "{memory:?}");
        // The library's copy (what `thingpress plan` prices) is the template's.
        assert_eq!(memory, template_memory_mb());
    }

    fn usd(p: &Projection, service: Service) -> f64 {
        p.by_service().get(&service).copied().unwrap_or(0.0)
    }

    /// Issue 12's "Cost" line: at AWS default quotas, 1,000,000 certificates, the model before
    /// issue 12 (MaxConcurrency 10, reserve 0.2) gives the README's $8.28 with IoT's registry
    /// charges in it; issue 12's sizing (reserve 0.1, children from the budget ÷ a child's
    /// capacity) brings Lambda + Step Functions + S3 + DynamoDB to ≤ $1.00 with one child, IoT
    /// apart. The projections print with `cargo test -p thingpress-tests --lib -- --nocapture`.
    #[test]
    fn default_quotas_cost_before_and_after_issue_12() {
        let m = reference_run();
        let before = project(&m, &static_deployment("before", 1.0, false), &PRICES).unwrap();
        let before_total = before.total_usd + before.iot_usd;
        assert_eq!(format!("{before_total:.2}"), "8.28", "{before:#?}");

        assert_eq!(format!("{:.2}", before.iot_usd), "3.75");
        assert_eq!(before.children, 10);
        assert_eq!(before.chunk_size, 360);

        // The template's ChildCapacity (20/s) reaches the 9/s budget alone: one child, chunks of
        // 2,000.
        let one = project(
            &m,
            &budget_deployment(
                "1 child",
                1.0,
                thingpress_run::settings::DEFAULT_CHILD_CAPACITY,
            ),
            &PRICES,
        )
        .unwrap();
        assert_eq!(one.children, 1);
        assert_eq!(one.chunk_size, 2_000);
        assert!((one.paced_per_second - 9.0).abs() < 1e-9);
        assert_eq!(one.continuations, 0.0);
        assert!(one.total_usd <= 1.00, "{one:#?}");
        assert!(usd(&one, Service::DynamoDB) > 0.0);
        assert_eq!(format!("{:.2}", one.iot_usd), "3.75");

        // The capacity measured behind moto (4.6/s) sizes two children: Register bills twice.
        let two = project(
            &m,
            &budget_deployment("4.6/s", 1.0, LOCAL_CHILD_CAPACITY),
            &PRICES,
        )
        .unwrap();
        assert_eq!(two.children, 2);
        assert!(two.total_usd > one.total_usd);
        for p in [&before, &one, &two] {
            println!(
                "{:<8} children {:>2} chunk {:>5} {:>6.2}/s {:>5.1} h  Lambda {:.2} SFN {:.2} S3 {:.2} DynamoDB {:.3}  total {:.2}  + IoT {:.2}",
                p.deployment.label,
                p.children,
                p.chunk_size,
                p.expected_per_second,
                p.wall_clock_seconds / 3600.0,
                usd(p, Service::Lambda),
                usd(p, Service::StepFunctions),
                usd(p, Service::S3),
                usd(p, Service::DynamoDB),
                p.total_usd,
                p.iot_usd
            );
        }
    }
}
