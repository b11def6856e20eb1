//! The compile-time registry: each connector's typed description erased into function
//! pointers ([`ConnectorRegistration`]), collected with `inventory`, and the
//! `register_*!` macros that submit them.

use super::*;
use crate::contract::FieldContract;

/// Result of checking one stage's config: problems, and what it publishes to readers.
#[derive(Debug, Default)]
pub struct ConfigCheck {
    pub issues: Vec<ConfigIssue>,
    pub output_attributes: Attributes,
    /// What [`ConnectorConfig::warnings`] found.
    pub warnings: Vec<ConfigIssue>,
}

/// Builds a connector instance from its (schema-checked) JSON config.
pub type BuildFn<T> = fn(&serde_json::Value, &StageContext) -> Result<T, ConnectorError>;

/// The erased constructor of a connector.
#[derive(Clone, Copy)]
pub enum Builder {
    Source(BuildFn<Box<dyn Source>>),
    Transform(BuildFn<TransformFactory>),
    Sink(BuildFn<Box<dyn Sink>>),
}

/// One registered connector, as stored by `inventory`.
pub struct ConnectorRegistration {
    pub name: &'static str,
    pub summary: &'static str,
    pub kind: ConnectorKind,
    pub inputs: &'static [InputPort],
    pub output: Option<RecordType>,
    /// JSON Schema (2020-12) of the config, derived from the config struct.
    pub schema: fn() -> serde_json::Value,
    /// Typed checks, run only on configs that satisfy the schema.
    pub check: fn(&serde_json::Value, &ValidationContext) -> ConfigCheck,
    /// Field contract derived from a (schema-checked) config; `None` if it does not parse.
    pub contract: fn(&serde_json::Value, &[InputPort]) -> Option<FieldContract>,
    pub builder: Builder,
}

inventory::collect!(ConnectorRegistration);

impl std::fmt::Debug for ConnectorRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectorRegistration")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

fn schema_of<C: ConnectorConfig>() -> serde_json::Value {
    crate::inline_schema::inline_schema_for::<C>()
}

/// A config that fails [`ConnectorConfig::check`], with every issue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", issues_text(.issues))]
pub struct InvalidConfig {
    pub issues: Vec<ConfigIssue>,
}

fn issues_text(issues: &[ConfigIssue]) -> String {
    let text: Vec<String> = issues
        .iter()
        .map(|i| match i.path.as_str() {
            "" => i.message.clone(),
            path => format!("{path}: {}", i.message),
        })
        .collect();
    text.join("; ")
}

impl From<InvalidConfig> for ConnectorError {
    fn from(e: InvalidConfig) -> Self {
        ConnectorError::Config(e.to_string())
    }
}

/// Whether `config` passes its own [`ConnectorConfig::check`]. The registry runs it
/// before every `build`, so `build` does not check again; only public constructors that
/// bypass the registry (tests, benchmarks) call it themselves.
pub fn require_valid<C: ConnectorConfig>(config: &C) -> Result<(), InvalidConfig> {
    let issues = config.check();
    if issues.is_empty() {
        Ok(())
    } else {
        Err(InvalidConfig { issues })
    }
}

fn deserialize_config<C: ConnectorConfig>(value: &serde_json::Value) -> Result<C, ConnectorError> {
    serde_json::from_value(value.clone()).map_err(|e| ConnectorError::Config(e.to_string()))
}

/// The typed config of a stage to build: deserialized, then `check`ed (a stage is only
/// built from a config that `validate` accepts).
fn parse_config<C: ConnectorConfig>(value: &serde_json::Value) -> Result<C, ConnectorError> {
    let config = deserialize_config::<C>(value)?;
    require_valid(&config)?;
    Ok(config)
}

fn check_config<C: ConnectorConfig>(
    value: &serde_json::Value,
    inputs: &ValidationContext,
) -> ConfigCheck {
    match deserialize_config::<C>(value) {
        Ok(config) => {
            let mut issues = config.check();
            issues.extend(config.check_inputs(inputs));
            ConfigCheck {
                issues,
                output_attributes: config.output_attributes(),
                warnings: config.warnings(),
            }
        }
        Err(e) => ConfigCheck {
            issues: vec![ConfigIssue::new("", e.to_string())],
            output_attributes: Attributes::new(),
            warnings: Vec::new(),
        },
    }
}

fn contract_of<C: ConnectorConfig>(
    value: &serde_json::Value,
    ports: &[InputPort],
) -> Option<FieldContract> {
    let config = parse_config::<C>(value).ok()?;
    Some(FieldContract {
        writes: config.output_fields(),
        needs: ports.iter().map(|p| config.needed_fields(p.name)).collect(),
    })
}

fn build_source<S: SourceConnector>(
    value: &serde_json::Value,
    stage: &StageContext,
) -> Result<Box<dyn Source>, ConnectorError> {
    S::build(parse_config(value)?, stage)
}

fn build_transform<T: TransformConnector>(
    value: &serde_json::Value,
    stage: &StageContext,
) -> Result<TransformFactory, ConnectorError> {
    let config: T::Config = parse_config(value)?;
    let stage = stage.clone();
    Ok(Arc::new(move |_partition| T::build(&config, &stage)))
}

fn build_sink<S: SinkConnector>(
    value: &serde_json::Value,
    stage: &StageContext,
) -> Result<Box<dyn Sink>, ConnectorError> {
    S::build(parse_config(value)?, stage)
}

impl ConnectorRegistration {
    pub const fn source<S: SourceConnector>() -> Self {
        ConnectorRegistration {
            name: S::NAME,
            summary: S::SUMMARY,
            kind: ConnectorKind::Source,
            inputs: &[],
            output: Some(S::OUTPUT),
            schema: schema_of::<S::Config>,
            check: check_config::<S::Config>,
            contract: contract_of::<S::Config>,
            builder: Builder::Source(build_source::<S>),
        }
    }

    pub const fn transform<T: TransformConnector>() -> Self {
        ConnectorRegistration {
            name: T::NAME,
            summary: T::SUMMARY,
            kind: ConnectorKind::Transform,
            inputs: T::INPUTS,
            output: Some(T::OUTPUT),
            schema: schema_of::<T::Config>,
            check: check_config::<T::Config>,
            contract: contract_of::<T::Config>,
            builder: Builder::Transform(build_transform::<T>),
        }
    }

    pub const fn sink<S: SinkConnector>() -> Self {
        ConnectorRegistration {
            name: S::NAME,
            summary: S::SUMMARY,
            kind: ConnectorKind::Sink,
            inputs: S::INPUTS,
            output: None,
            schema: schema_of::<S::Config>,
            check: check_config::<S::Config>,
            contract: contract_of::<S::Config>,
            builder: Builder::Sink(build_sink::<S>),
        }
    }

    /// Every registered connector, sorted by name.
    pub fn all() -> Vec<&'static ConnectorRegistration> {
        let mut all: Vec<_> = inventory::iter::<ConnectorRegistration>().collect();
        all.sort_by_key(|r| r.name);
        all
    }

    pub fn find(name: &str) -> Option<&'static ConnectorRegistration> {
        inventory::iter::<ConnectorRegistration>().find(|r| r.name == name)
    }
}

/// Registers a [`SourceConnector`].
#[macro_export]
macro_rules! register_source {
    ($connector:ty) => {
        $crate::inventory::submit! { $crate::ConnectorRegistration::source::<$connector>() }
    };
}

/// Registers a [`TransformConnector`].
#[macro_export]
macro_rules! register_transform {
    ($connector:ty) => {
        $crate::inventory::submit! { $crate::ConnectorRegistration::transform::<$connector>() }
    };
}

/// Registers a [`SinkConnector`].
#[macro_export]
macro_rules! register_sink {
    ($connector:ty) => {
        $crate::inventory::submit! { $crate::ConnectorRegistration::sink::<$connector>() }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, schemars::JsonSchema)]
    struct Limits {
        low: u32,
        high: u32,
    }

    impl ConnectorConfig for Limits {
        fn check(&self) -> Vec<ConfigIssue> {
            let mut issues = Vec::new();
            if self.low == 0 {
                issues.push(ConfigIssue::new("low", "must be positive"));
            }
            if self.high < self.low {
                issues.push(ConfigIssue::new("high", "must be at least low"));
            }
            issues
        }
    }

    #[test]
    fn parse_config_refuses_a_config_that_fails_check_naming_every_issue() {
        let error = parse_config::<Limits>(&serde_json::json!({"low": 0, "high": 0}))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some("invalid configuration: low: must be positive")
        );
        let error = require_valid(&Limits { low: 0, high: 0 }).err();
        assert_eq!(error.map(|e| e.issues.len()), Some(1));
        let error = parse_config::<Limits>(&serde_json::json!({"low": 3, "high": 2})).err();
        assert!(
            matches!(error, Some(ConnectorError::Config(m)) if m == "high: must be at least low")
        );
        assert!(parse_config::<Limits>(&serde_json::json!({"low": 1, "high": 2})).is_ok());
    }
}
