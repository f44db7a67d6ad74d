//! What every Thingpress Lambda does around its handler: logs in Lambda's format, the SDK
//! configuration and S3 store built once, and a [`TaskError`] turned into the Lambda error whose
//! type (`Thingpress.*`) the state machine's Retry and Catch match.

use std::future::Future;

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use thingpress_run::payload::from_value;
use thingpress_run::{S3Store, Settings, TaskError};

/// What a handler's task is built from, loaded once per container.
pub struct Container {
    /// The SDK configuration (endpoint from `AWS_ENDPOINT_URL`, short SDK retry).
    pub config: aws_config::SdkConfig,
    /// The run bucket.
    pub store: S3Store,
    /// The function's settings from its environment.
    pub settings: Settings,
}

impl Container {
    /// Installs logging, then reads the settings and loads the SDK configuration.
    pub async fn load() -> Result<Self, lambda_runtime::Error> {
        init_tracing();
        let settings = Settings::from_env()?;
        let config = thingpress_aws::load_config().await;
        let store = S3Store::new(thingpress_run::store::s3_client(&config));
        Ok(Container {
            config,
            store,
            settings,
        })
    }
}

/// Runs `handler` on every invocation until the runtime stops; the input and output are typed,
/// and a [`TaskError`] becomes the Lambda error `Thingpress.*`. The payload is read as JSON
/// first and then as `I` here, not by the runtime, so an input that does not fit is
/// `Thingpress.InvalidInput` (which the state machine does not retry), naming the field.
pub async fn serve<I, O, F, Fut>(handler: F) -> Result<(), lambda_runtime::Error>
where
    I: DeserializeOwned + Send + 'static,
    O: Serialize + Send + 'static,
    F: Fn(LambdaEvent<I>) -> Fut,
    Fut: Future<Output = Result<O, TaskError>>,
{
    // Boxed: the runtime's future around a handler is deep enough to pass the compiler's
    // layout query limit in a binary's main.
    Box::pin(lambda_runtime::run(service_fn(
        |event: LambdaEvent<Value>| {
            let result = typed(event).map(&handler);
            async move {
                match result {
                    Ok(output) => output.await.map_err(diagnostic),
                    Err(err) => Err(diagnostic(err)),
                }
            }
        },
    )))
    .await
}

/// The event with its payload read as the handler's input type.
pub fn typed<I: DeserializeOwned>(event: LambdaEvent<Value>) -> Result<LambdaEvent<I>, TaskError> {
    let LambdaEvent { payload, context } = event;
    Ok(LambdaEvent::new(from_value(payload)?, context))
}

/// The Lambda error for a task error: its type is the `Thingpress.*` name.
pub fn diagnostic(err: TaskError) -> Diagnostic {
    Diagnostic {
        error_type: err.name.as_str().to_owned(),
        error_message: err.message,
    }
}

/// Installs the tracing subscriber on stdout: JSON lines when Lambda's log format is JSON,
/// text otherwise; level from `RUST_LOG`, else Lambda's `AWS_LAMBDA_LOG_LEVEL`, else info.
fn init_tracing() {
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    // set_global_default fails only when a subscriber is already set (tests): keep the first.
    let _ =
        tracing::subscriber::set_global_default(subscriber(env_filter(), json, std::io::stdout));
}

/// `RUST_LOG` when set and valid, else Lambda's advanced logging level, else info.
fn env_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
            .ok()
            .and_then(|level| lambda_level(&level))
            .unwrap_or("info");
        tracing_subscriber::EnvFilter::new(level)
    })
}

/// Lambda's log levels (TRACE, DEBUG, INFO, WARN, ERROR, FATAL) as tracing directives.
fn lambda_level(level: &str) -> Option<&'static str> {
    match level.to_ascii_uppercase().as_str() {
        "TRACE" => Some("trace"),
        "DEBUG" => Some("debug"),
        "INFO" => Some("info"),
        "WARN" => Some("warn"),
        "ERROR" | "FATAL" => Some("error"),
        _ => None,
    }
}

/// The subscriber writing to `writer`. Every line carries an RFC 3339 UTC `timestamp` and its
/// `level`, the two top-level keys Lambda's JSON log format reads to filter application logs
/// by level (a line without them is filed as INFO).
fn subscriber<W>(
    filter: tracing_subscriber::EnvFilter,
    json: bool,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    // SystemTime formats as RFC 3339 in UTC with microseconds: 2026-11-30T13:51:16.123456Z.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        // No colour codes: CloudWatch shows them as text.
        .with_ansi(false)
        .with_timer(tracing_subscriber::fmt::time::SystemTime)
        .with_writer(writer);
    if json {
        Box::new(builder.json().finish())
    } else {
        Box::new(builder.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines(captured: &Captured) -> Vec<String> {
        let bytes = captured.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn a_payload_that_does_not_fit_the_input_is_invalid_input() {
        let event = |payload| LambdaEvent::new(payload, lambda_runtime::Context::default());
        let ok: LambdaEvent<thingpress_run::payload::SummarizeInput> = typed(event(
            serde_json::json!({"status": "Retry", "runId": "r", "bucket": "b",
                               "chunksKey": "runs/r/chunks.json", "maxConcurrency": 1}),
        ))
        .unwrap();
        assert_eq!(ok.payload.run_id(), "r");
        let err = typed::<thingpress_run::payload::SummarizeInput>(event(
            serde_json::json!({"status": "Started", "runId": "r"}),
        ))
        .unwrap_err();
        assert_eq!(diagnostic(err).error_type, "Thingpress.InvalidInput");
    }

    #[test]
    fn diagnostic_carries_the_thingpress_name() {
        let d = diagnostic(TaskError::invalid_input("no runId"));
        assert_eq!(d.error_type, "Thingpress.InvalidInput");
        assert_eq!(d.error_message, "no runId");
    }

    #[test]
    fn json_lines_carry_an_rfc3339_timestamp_and_the_level_lambda_filters_on() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = subscriber(
            tracing_subscriber::EnvFilter::new("warn"),
            true,
            move || writer.clone(),
        );
        let before = today();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("filtered out by the level");
            tracing::warn!(chunk = 3, "chunk stopped early");
        });
        let lines = lines(&captured);
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(line["level"], "WARN", "{line}");
        assert_eq!(line["fields"]["message"], "chunk stopped early", "{line}");
        assert_eq!(line["fields"]["chunk"], 3, "{line}");
        let timestamp = line["timestamp"].as_str().unwrap();
        assert!(is_rfc3339_utc(timestamp), "{timestamp}");
        // Written just now: the UTC date the clock said around it.
        let dates = [civil_date(before), civil_date(today())];
        assert!(dates.contains(&timestamp[..10].to_owned()), "{timestamp}");
    }

    fn today() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            / 86_400
    }

    #[test]
    fn text_lines_carry_a_timestamp_too() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = subscriber(
            tracing_subscriber::EnvFilter::new("info"),
            false,
            move || writer.clone(),
        );
        tracing::subscriber::with_default(subscriber, || tracing::info!("hello"));
        let lines = lines(&captured);
        assert_eq!(lines.len(), 1, "{lines:?}");
        let first = lines[0].split_whitespace().next().unwrap_or_default();
        assert!(is_rfc3339_utc(first), "{}", lines[0]);
    }

    #[test]
    fn lambda_levels_map_to_tracing_directives() {
        assert_eq!(lambda_level("debug"), Some("debug"));
        assert_eq!(lambda_level("WARN"), Some("warn"));
        assert_eq!(lambda_level("FATAL"), Some("error"));
        assert_eq!(lambda_level("loud"), None);
    }

    /// `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, checked field by field.
    fn is_rfc3339_utc(s: &str) -> bool {
        let b = s.as_bytes();
        let digits = |r: std::ops::Range<usize>| {
            b.get(r.clone())
                .is_some_and(|d| d.len() == r.len() && d.iter().all(u8::is_ascii_digit))
        };
        let number = |r: std::ops::Range<usize>| s.get(r).and_then(|d| d.parse::<u32>().ok());
        let Some(rest) = s.get(19..) else {
            return false;
        };
        let fraction_ok = match rest.strip_suffix('Z') {
            Some("") => true,
            Some(f) => {
                f.len() > 1 && f.starts_with('.') && f[1..].bytes().all(|c| c.is_ascii_digit())
            }
            None => false,
        };
        digits(0..4)
            && b.get(4) == Some(&b'-')
            && digits(5..7)
            && b.get(7) == Some(&b'-')
            && digits(8..10)
            && b.get(10) == Some(&b'T')
            && digits(11..13)
            && b.get(13) == Some(&b':')
            && digits(14..16)
            && b.get(16) == Some(&b':')
            && digits(17..19)
            && number(5..7).is_some_and(|m| (1..=12).contains(&m))
            && number(8..10).is_some_and(|d| (1..=31).contains(&d))
            && number(11..13).is_some_and(|h| h < 24)
            && number(14..16).is_some_and(|m| m < 60)
            && number(17..19).is_some_and(|s| s < 61)
            && fraction_ok
    }

    /// The UTC date of `days` since 1970-01-01 (Howard Hinnant's civil_from_days).
    fn civil_date(days: u64) -> String {
        let z = days as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        format!("{year:04}-{month:02}-{day:02}")
    }
}
