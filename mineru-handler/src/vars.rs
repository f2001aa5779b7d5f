//! The one reader of the worker's configuration variables. Every setting of the crate is read
//! through [`Vars`], once, at boot: [`WorkerConfig::from_env`](crate::config::WorkerConfig::from_env)
//! takes one [`Snapshot`] of the process environment, and nothing reads the environment at
//! job time. One rule says whether a variable is set: its value, trimmed, is not empty.

use std::collections::HashMap;
use std::str::FromStr;

/// Configuration variables, looked up by name.
pub(crate) struct Vars<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Vars<'a> {
    /// Reads through `lookup` (a [`Snapshot`] in production, a table in tests).
    pub(crate) fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Vars { lookup }
    }

    /// `name`'s value, trimmed, when it is set.
    pub(crate) fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// Whether `name` is set.
    pub(crate) fn is_set(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// A switch: `1`, `true`, `yes` or `on` (any case) turn it on, any other value off;
    /// `default` when unset.
    pub(crate) fn flag(&self, name: &str, default: bool) -> bool {
        self.get(name).map_or(default, |v| {
            matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
        })
    }

    /// `name` parsed, when it is set; `Err` carries the value that does not parse.
    pub(crate) fn parse<T: FromStr>(&self, name: &str) -> Result<Option<T>, String> {
        self.get(name).map(|v| v.parse().map_err(|_| v)).transpose()
    }
}

/// The process environment, read once (names and values that are not Unicode are left out).
pub(crate) struct Snapshot(HashMap<String, String>);

impl Snapshot {
    /// Reads the process environment.
    pub(crate) fn take() -> Self {
        Snapshot(
            std::env::vars_os()
                .filter_map(|(name, value)| {
                    Some((name.into_string().ok()?, value.into_string().ok()?))
                })
                .collect(),
        )
    }

    /// One variable's value, as set.
    pub(crate) fn lookup(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }

    /// Every variable's name.
    pub(crate) fn names(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }

    /// Every variable, as `(name, value)`.
    pub(crate) fn pairs(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.0.iter().map(|(k, v)| (k.clone(), v.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_means_non_empty_once_trimmed() {
        let lookup = |name: &str| match name {
            "BLANK" => Some("  ".to_owned()),
            "PADDED" => Some(" on ".to_owned()),
            "COUNT" => Some("12".to_owned()),
            _ => None,
        };
        let vars = Vars::new(&lookup);
        assert_eq!(vars.get("BLANK"), None);
        assert!(!vars.is_set("UNSET"));
        assert_eq!(vars.get("PADDED").as_deref(), Some("on"));
        assert!(vars.flag("PADDED", false));
        assert!(vars.flag("BLANK", true), "blank is unset: the default");
        assert_eq!(vars.parse::<u32>("COUNT"), Ok(Some(12)));
        assert_eq!(vars.parse::<u32>("PADDED"), Err("on".to_owned()));
        assert_eq!(vars.parse::<u32>("BLANK"), Ok(None));
    }
}
