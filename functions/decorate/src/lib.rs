//! Decorate: apply the run's product profile to every entry of one chunk: an import's manifest
//! entries get their thing's name, attributes and attachments; an activation's shipped devices
//! get their thing's name (from the device id) and the activation groups.

use lambda_runtime::LambdaEvent;
use thingpress_importer::{Activation, ListedDevice, Removal};
use thingpress_manifest::{Accepted, ErrorName, Rejected};
use thingpress_product::Decorator;
use thingpress_run::payload::{ChunkInput, DecoratedChunk, Operation};
use thingpress_run::records::DecoratedLine;
use thingpress_run::{RunStore, Settings, Store, TaskError};
use thingpress_shipping::Shipped;

/// The decorate task.
pub struct Task<S> {
    store: S,
    settings: Settings,
}

impl<S: Store + Clone> Task<S> {
    /// Builds the task once per container (it needs only the store).
    pub fn with_store(store: S, settings: Settings) -> Self {
        Task { store, settings }
    }

    /// Handles one chunk.
    pub async fn handle(
        &self,
        event: LambdaEvent<ChunkInput>,
    ) -> Result<DecoratedChunk, TaskError> {
        self.decorate(event.payload).await
    }

    /// Decorates the chunk the input names; the output is the input plus where the decorated
    /// entries are, for Register.
    pub async fn decorate(&self, input: ChunkInput) -> Result<DecoratedChunk, TaskError> {
        let run = RunStore::new(
            self.store.clone(),
            &self.settings.import_bucket,
            input.layout()?,
        );
        let n = input.chunk.chunk;
        let info = run.run_info().await?;
        let decorator = Decorator::new(&info.profile).map_err(|(name, message)| {
            TaskError::new(name, format!("profile {:?}: {message}", info.profile.name))
        })?;
        let lines: Vec<DecoratedLine> = match info.operation {
            Operation::Import => chunk::<S, Accepted>(&run, &input)
                .await?
                .iter()
                .map(|entry| match decorator.decorate(entry) {
                    Ok(decorated) => DecoratedLine::Decorated(decorated),
                    Err(rejected) => DecoratedLine::Rejected(rejected),
                })
                .collect(),
            Operation::Activate => chunk::<S, Shipped>(&run, &input)
                .await?
                .into_iter()
                .map(|device| activation(&decorator, device))
                .collect(),
            Operation::Decommission | Operation::DecommissionDryRun => {
                let execute = info.operation == Operation::Decommission;
                chunk::<S, Shipped>(&run, &input)
                    .await?
                    .into_iter()
                    .map(|device| removal(&decorator, device, execute))
                    .collect()
            }
        };
        let rejected = lines
            .iter()
            .filter(|l| matches!(l, DecoratedLine::Rejected(Rejected { .. })))
            .count() as u64;
        let decorated = lines.len() as u64 - rejected;
        let decorated_key = run.put_decorated(n, &lines).await?;
        tracing::info!(
            run_id = input.run_id,
            chunk = n,
            decorated,
            rejected,
            "chunk decorated"
        );
        Ok(DecoratedChunk {
            run_id: input.run_id,
            bucket: input.bucket,
            chunk: input.chunk,
            child_execution_type: input.child_execution_type,
            decorated_key,
            decorated,
            rejected,
            done: None,
            continuation: None,
        })
    }
}

/// The entries of the input's chunk, checked against the index's count.
async fn chunk<S: Store + Clone, T: serde::de::DeserializeOwned>(
    run: &RunStore<S>,
    input: &ChunkInput,
) -> Result<Vec<T>, TaskError> {
    let (_, source) = input.layout_and_source()?;
    let entries: Vec<T> = run.chunk(source).await?.ok_or_else(|| {
        TaskError::invalid_input(format!("chunk {} does not exist", input.chunk.key))
    })?;
    if entries.len() as u64 != input.chunk.entries {
        return Err(TaskError::invalid_input(format!(
            "chunk {} holds {} entries, the index says {}",
            input.chunk.key,
            entries.len(),
            input.chunk.entries
        )));
    }
    Ok(entries)
}

/// The thing a listed device names: through the profile's template from its device id. When
/// the template needs more than the list gives, the certificate (if the list names it) finds the
/// thing instead; without one the entry is rejected.
fn listed_thing(decorator: &Decorator, device: &Shipped) -> Result<Option<String>, Rejected> {
    let Some(id) = &device.device_id else {
        return Ok(None);
    };
    match decorator.thing_name_of_device(id, device.certificate_id.as_deref()) {
        Ok(name) => Ok(Some(name)),
        Err(_) if device.certificate_id.is_some() => Ok(None),
        Err(why) => Err(Rejected {
            index: device.index,
            error: ErrorName::InvalidThingName,
            message: format!("device {id}: {why}"),
            device_id: Some(id.clone()),
        }),
    }
}

/// A shipped device ready for activation.
fn activation(decorator: &Decorator, device: Shipped) -> DecoratedLine {
    let thing_name = match listed_thing(decorator, &device) {
        Ok(name) => name,
        Err(rejected) => return DecoratedLine::Rejected(rejected),
    };
    DecoratedLine::Activation(Activation {
        device: ListedDevice {
            index: device.index,
            certificate_id: device.certificate_id,
            device_id: device.device_id,
            thing_name,
        },
        attributes: device.attributes,
        groups: decorator.profile().activation_groups.clone(),
    })
}

/// A listed device ready for decommissioning: what the profile attached is what may be removed.
fn removal(decorator: &Decorator, device: Shipped, execute: bool) -> DecoratedLine {
    let thing_name = match listed_thing(decorator, &device) {
        Ok(name) => name,
        Err(rejected) => return DecoratedLine::Rejected(rejected),
    };
    let profile = decorator.profile();
    DecoratedLine::Removal(Removal {
        device: ListedDevice {
            index: device.index,
            certificate_id: device.certificate_id,
            device_id: device.device_id,
            thing_name,
        },
        mark: profile.name.clone(),
        policies: profile.policies.clone(),
        groups: profile.all_thing_groups(),
        execute,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use thingpress_product::Profile;

    fn shipped(certificate_id: Option<&str>, device_id: Option<&str>) -> Shipped {
        Shipped {
            index: 7,
            certificate_id: certificate_id.map(str::to_owned),
            device_id: device_id.map(str::to_owned),
            attributes: BTreeMap::from([("batch".to_owned(), "b1".to_owned())]),
        }
    }

    #[test]
    fn a_shipped_device_gets_its_thing_from_the_template_or_from_its_certificate() {
        let mut profile = Profile::named("widget");
        profile.thing_name = "dev-{deviceId}".into();
        profile.activation_groups = vec!["shipped".into()];
        let decorator = Decorator::new(&profile).unwrap();
        let DecoratedLine::Activation(a) = activation(&decorator, shipped(None, Some("d1"))) else {
            panic!("an activation");
        };
        assert_eq!(a.device.thing_name.as_deref(), Some("dev-d1"));
        assert_eq!(a.groups, ["shipped"]);
        assert_eq!(a.attributes["batch"], "b1");

        profile.thing_name = "{partNumber}-{deviceId}".into();
        let decorator = Decorator::new(&profile).unwrap();
        let id = "ab".repeat(32);
        let DecoratedLine::Activation(a) = activation(&decorator, shipped(Some(&id), Some("d1")))
        else {
            panic!("the certificate finds the thing");
        };
        assert_eq!(
            (a.device.thing_name, a.device.certificate_id),
            (None, Some(id))
        );
        let DecoratedLine::Rejected(r) = activation(&decorator, shipped(None, Some("d1"))) else {
            panic!("nothing finds the thing");
        };
        assert_eq!(r.error, ErrorName::InvalidThingName);
        assert!(r.message.contains("needs {partNumber}"), "{}", r.message);
    }
}
