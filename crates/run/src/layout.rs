//! Where a run keeps its objects in the stack's bucket: everything of run `<runId>` under
//! `runs/<runId>/`, claims under `claims/`, profiles under `profiles/`, uploads under `incoming/`.

use thingpress_manifest::sha256_hex;

use crate::TaskError;

/// The key prefix whose uploads start imports: `incoming/<profile>/<file>`.
pub const INCOMING_PREFIX: &str = "incoming/";

/// The keys of one run, all under `runs/<runId>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunLayout {
    run_id: String,
}

impl RunLayout {
    /// A run's layout; the id must be a valid execution name (it becomes part of S3 keys).
    pub fn new(run_id: &str) -> Result<Self, TaskError> {
        let valid = !run_id.is_empty()
            && run_id.len() <= 80
            && run_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(TaskError::invalid_input(format!(
                "runId {run_id:?} is not an execution name (1-80 of A-Z a-z 0-9 - _)"
            )));
        }
        Ok(RunLayout {
            run_id: run_id.to_owned(),
        })
    }

    /// The run id (the execution name).
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// `runs/<runId>/`.
    pub fn prefix(&self) -> String {
        format!("runs/{}/", self.run_id)
    }

    /// The run's settings and counts, written by Split.
    pub fn run_info(&self) -> String {
        format!("runs/{}/run.json", self.run_id)
    }

    /// The JSON array of chunk descriptors that the Map reads.
    pub fn chunk_index(&self) -> String {
        format!("runs/{}/chunks.json", self.run_id)
    }

    /// Accepted manifest entries of chunk `n`, JSON lines.
    pub fn chunk(&self, n: u32) -> String {
        format!("runs/{}/chunks/{n:05}.jsonl", self.run_id)
    }

    /// The chunk whose accepted entries `key` holds (`chunks/00007.jsonl` → 7); `None` for
    /// another key.
    pub fn chunk_of_key(&self, key: &str) -> Option<u32> {
        let n: u32 = key
            .strip_prefix(&format!("runs/{}/chunks/", self.run_id))?
            .strip_suffix(".jsonl")?
            .parse()
            .ok()?;
        // Only the spelling `chunk` writes, so one chunk has one key.
        (self.chunk(n) == key).then_some(n)
    }

    /// Decorated entries (and decoration rejections) of chunk `n`.
    pub fn decorated(&self, n: u32) -> String {
        format!("runs/{}/decorated/{n:05}.jsonl", self.run_id)
    }

    /// One result line per entry of chunk `n`, written once the chunk is complete.
    pub fn results(&self, n: u32) -> String {
        format!("runs/{}/results/{n:05}.jsonl", self.run_id)
    }

    /// The prefix of every chunk's results, `runs/<runId>/results/`.
    pub fn results_prefix(&self) -> String {
        format!("runs/{}/results/", self.run_id)
    }

    /// The chunk whose results `key` holds (`results/00007.jsonl` → 7); `None` for another key.
    pub fn chunk_of_results(&self, key: &str) -> Option<u32> {
        key.strip_prefix(&self.results_prefix())?
            .strip_suffix(".jsonl")?
            .parse()
            .ok()
    }

    /// Results of chunk `n` so far, kept when Register stops early (throttling, deadline).
    pub fn progress(&self, n: u32) -> String {
        format!("runs/{}/progress/{n:05}.jsonl", self.run_id)
    }

    /// API calls and timings of chunk `n`.
    pub fn stats(&self, n: u32) -> String {
        format!("runs/{}/stats/{n:05}.json", self.run_id)
    }

    /// Part `n` of the manifest entries Split rejected, JSON lines.
    pub fn rejected(&self, part: u32) -> String {
        format!("runs/{}/rejected/{part:05}.jsonl", self.run_id)
    }

    /// The run report, written by Summarize.
    pub fn report(&self) -> String {
        format!("runs/{}/report.json", self.run_id)
    }

    /// The prefix of the retries `thingpress retry-failed` started for this run, `retries/NNNNN/`.
    pub fn retries(&self) -> String {
        format!("runs/{}/retries/", self.run_id)
    }

    /// The retry whose object `key` is (`retries/00002/…` → 2); `None` for another key.
    pub fn retry_of_key(&self, key: &str) -> Option<u32> {
        let (n, _) = key.strip_prefix(&self.retries())?.split_once('/')?;
        n.parse().ok()
    }

    /// Where `thingpress import --start` uploads a manifest for this run.
    pub fn manifest(&self, file_name: &str) -> String {
        format!("runs/{}/manifest/{file_name}", self.run_id)
    }

    /// The chunk index retry `n` imports (a subset of `chunks.json`).
    pub fn retry_index(&self, n: u32) -> String {
        format!("runs/{}/retries/{n:05}/chunks.json", self.run_id)
    }

    /// What retry `n` did: its execution and chunks.
    pub fn retry_record(&self, n: u32) -> String {
        format!("runs/{}/retries/{n:05}/retry.json", self.run_id)
    }

    /// The results of chunk `chunk` as they were before retry `n` reopened the chunk.
    pub fn superseded(&self, n: u32, chunk: u32) -> String {
        format!(
            "runs/{}/retries/{n:05}/superseded/{chunk:05}.jsonl",
            self.run_id
        )
    }
}

/// The key prefix of stored profiles.
pub const PROFILES_PREFIX: &str = "profiles/";

/// Where a stored profile lives.
pub fn profile_key(name: &str) -> Result<String, TaskError> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with('.');
    if !valid {
        return Err(TaskError::invalid_profile(format!(
            "profile name {name:?} must be 1-128 of A-Z a-z 0-9 - _ . (not starting with .)"
        )));
    }
    Ok(format!("{PROFILES_PREFIX}{name}.json"))
}

/// The profile a key under `profiles/` stores (`profiles/<name>.json` → `<name>`); `None` for any
/// other key, or a name `profile_key` would refuse.
pub fn profile_of_key(key: &str) -> Option<&str> {
    let name = key.strip_prefix(PROFILES_PREFIX)?.strip_suffix(".json")?;
    profile_key(name).ok().map(|_| name)
}

/// The upload key that starts an import of `file_name` with `profile`: `incoming/<profile>/<file>`.
pub fn incoming_key(profile: &str, file_name: &str) -> String {
    format!("{INCOMING_PREFIX}{profile}/{file_name}")
}

/// The profile named by an upload key `incoming/<profile>/<file>`.
pub fn profile_of_incoming_key(key: &str) -> Result<&str, TaskError> {
    key.strip_prefix(INCOMING_PREFIX)
        .and_then(|rest| rest.split_once('/'))
        .filter(|(profile, file)| !profile.is_empty() && !file.is_empty())
        .map(|(profile, _)| profile)
        .ok_or_else(|| {
            TaskError::invalid_input(format!(
                "object key {key:?} is not incoming/<profile>/<file>"
            ))
        })
}

/// The claim that makes one run the owner of one source object's *content*: bucket, key, ETag
/// and size, never the version id. The bucket is versioned, so every upload of identical bytes
/// is a new version; keyed by version, a re-upload would be imported again instead of skipped.
pub fn claim_key(bucket: &str, key: &str, etag: &str, size: u64) -> String {
    // A JSON array: unambiguous whatever the key holds (S3 keys may contain newlines).
    let id = sha256_hex(
        serde_json::json!([bucket, key, etag, size])
            .to_string()
            .as_bytes(),
    );
    format!("claims/{id}.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_under_the_run_prefix() {
        let run = RunLayout::new("import-2026_1").unwrap();
        assert_eq!(run.chunk(7), "runs/import-2026_1/chunks/00007.jsonl");
        assert_eq!(run.chunk(123_456), "runs/import-2026_1/chunks/123456.jsonl");
        for key in [
            run.run_info(),
            run.chunk_index(),
            run.results(1),
            run.report(),
            run.retry_index(2),
            run.retry_record(2),
            run.superseded(2, 1),
        ] {
            assert!(key.starts_with(&run.prefix()));
        }
    }

    #[test]
    fn run_ids_and_profile_names_cannot_escape_their_prefix() {
        for bad in ["", "../x", "a/b", "a b", &"x".repeat(81)] {
            assert!(RunLayout::new(bad).is_err(), "{bad}");
        }
        for bad in ["", "../x", "a/b", ".hidden"] {
            assert!(profile_key(bad).is_err(), "{bad}");
        }
        assert_eq!(profile_key("widget-v2").unwrap(), "profiles/widget-v2.json");
    }

    #[test]
    fn keys_read_back_into_chunks_retries_and_profiles() {
        let run = RunLayout::new("r1").unwrap();
        assert_eq!(run.chunk_of_results(&run.results(7)), Some(7));
        assert_eq!(run.chunk_of_key(&run.chunk(7)), Some(7));
        assert_eq!(run.chunk_of_key("runs/r1/chunks/7.jsonl"), None);
        assert_eq!(run.chunk_of_key("runs/r2/chunks/00007.jsonl"), None);
        assert_eq!(run.chunk_of_key(&run.results(7)), None);
        assert_eq!(run.chunk_of_results(&run.progress(7)), None);
        assert_eq!(run.chunk_of_results("runs/r1/results/junk"), None);
        assert_eq!(run.chunk_of_results("runs/r2/results/00001.jsonl"), None);
        assert_eq!(run.retry_of_key(&run.retry_index(2)), Some(2));
        assert_eq!(run.retry_of_key(&run.superseded(3, 1)), Some(3));
        assert_eq!(run.retry_of_key(&run.results(1)), None);
        assert_eq!(run.manifest("reel.pem"), "runs/r1/manifest/reel.pem");
        let profile = profile_key("widget").unwrap();
        assert_eq!(profile_of_key(&profile), Some("widget"));
        for other in [
            "profiles/",
            "profiles/x.txt",
            "profiles/sub/x.json",
            "other/x.json",
        ] {
            assert_eq!(profile_of_key(other), None, "{other}");
        }
        let key = incoming_key("widget", "reel.json");
        assert_eq!(profile_of_incoming_key(&key).unwrap(), "widget");
    }

    #[test]
    fn incoming_keys_name_their_profile() {
        assert_eq!(
            profile_of_incoming_key("incoming/widget/reel1.json").unwrap(),
            "widget"
        );
        assert_eq!(
            profile_of_incoming_key("incoming/widget/sub/reel1.json").unwrap(),
            "widget"
        );
        for bad in [
            "incoming/reel.json",
            "other/widget/x",
            "incoming//x",
            "incoming/w/",
        ] {
            assert!(profile_of_incoming_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn claims_follow_the_content_not_the_upload() {
        // The same bytes uploaded again: same ETag and size, so the same claim.
        assert_eq!(claim_key("b", "k", "e1", 10), claim_key("b", "k", "e1", 10));
        assert!(claim_key("b", "k", "e1", 10).starts_with("claims/"));
        // Other bytes, another object or another bucket: another claim.
        assert_ne!(claim_key("b", "k", "e1", 10), claim_key("b", "k", "e2", 10));
        assert_ne!(claim_key("b", "k", "e1", 10), claim_key("b", "k", "e1", 11));
        assert_ne!(
            claim_key("b", "k", "e1", 10),
            claim_key("b", "k2", "e1", 10)
        );
        assert_ne!(
            claim_key("b", "k", "e1", 10),
            claim_key("b2", "k", "e1", 10)
        );
        // Fields cannot run into each other (S3 keys may hold newlines).
        assert_ne!(
            claim_key("b", "k\ne", "1", 0),
            claim_key("b", "k", "e\n1", 0)
        );
    }
}
