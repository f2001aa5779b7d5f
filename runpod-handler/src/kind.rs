//! [`RuntimeKind`]: which kind of RunPod endpoint this process serves, read from
//! `RUNPOD_RUNTIME_KIND`, so that one binary can serve either.

use crate::config::{ConfigError, Env};

/// The kind of serverless endpoint a worker serves.
///
/// RunPod runs a queue-based endpoint's workers against its job queue, and a load-balancing
/// endpoint's workers as plain HTTP servers that it routes requests to. `RUNPOD_RUNTIME_KIND=api`
/// selects the load-balancing kind; unset, empty or `queue` selects the queue.
///
/// ```
/// use runpod_handler::RuntimeKind;
///
/// assert_eq!(RuntimeKind::from_value(Some("api")), Ok(RuntimeKind::LoadBalancing));
/// assert_eq!(RuntimeKind::from_value(None), Ok(RuntimeKind::Queue));
/// assert!(RuntimeKind::from_value(Some("lambda")).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    /// A queue-based endpoint: take jobs, post results ([`Runtime`](crate::Runtime)).
    Queue,
    /// A load-balancing endpoint: serve HTTP on `PORT` with `/ping` on `PORT_HEALTH`
    /// (`lb::LoadBalancer`, feature `lb`).
    LoadBalancing,
}

/// The variable that selects the kind.
const VARIABLE: &str = "RUNPOD_RUNTIME_KIND";

impl RuntimeKind {
    /// Reads `RUNPOD_RUNTIME_KIND` (once, at boot: it decides which worker to build).
    pub fn from_env() -> Result<Self, ConfigError> {
        let value = Env(&|name| std::env::var(name).ok()).get(VARIABLE);
        Self::from_value(value.as_deref())
    }

    /// Parses a value of `RUNPOD_RUNTIME_KIND` (`None` when unset); case-insensitive.
    pub fn from_value(value: Option<&str>) -> Result<Self, ConfigError> {
        match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("" | "queue") => Ok(Self::Queue),
            Some("api") => Ok(Self::LoadBalancing),
            Some(_) => Err(ConfigError::Invalid {
                name: VARIABLE,
                value: value.unwrap_or_default().to_owned(),
                reason: "expected `api` (load-balancing endpoint) or `queue`",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_selects_load_balancing_in_any_case() {
        assert_eq!(
            RuntimeKind::from_value(Some(" API ")),
            Ok(RuntimeKind::LoadBalancing)
        );
        assert_eq!(
            RuntimeKind::from_value(Some("Queue")),
            Ok(RuntimeKind::Queue)
        );
        assert_eq!(RuntimeKind::from_value(Some("")), Ok(RuntimeKind::Queue));
        let err = RuntimeKind::from_value(Some("serverless")).unwrap_err();
        assert!(err.to_string().contains("RUNPOD_RUNTIME_KIND"), "{err}");
    }
}
