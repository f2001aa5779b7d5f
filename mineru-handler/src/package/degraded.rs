//! `results[0].degraded` (docs/job-contract.md §9.6): the artefacts packaging dropped, and why.

use serde::Serialize;

/// Why an artefact was dropped (docs/job-contract.md §9.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DegradedReason {
    /// Open, read, decode or JSON failure.
    Unreadable,
    /// A broken link or link loop.
    Unresolvable,
    /// A link resolving outside the output directory.
    OutsideOutputDir,
    /// An absolute name, drive letter, `..`/`.`/empty segment, or backslash.
    UnsafeName,
}

impl DegradedReason {
    /// The wire spelling (also the metrics label).
    pub fn as_str(self) -> &'static str {
        match self {
            DegradedReason::Unreadable => "unreadable",
            DegradedReason::Unresolvable => "unresolvable",
            DegradedReason::OutsideOutputDir => "outside_output_dir",
            DegradedReason::UnsafeName => "unsafe_name",
        }
    }
}

/// One dropped artefact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DegradedItem {
    /// The inline key for inline reads, `null` for archive members.
    pub artifact: Option<&'static str>,
    /// A file name, never a path.
    pub file: String,
    /// Why.
    pub reason: DegradedReason,
    /// The error's type, for `unreadable`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
}

/// `results[0].degraded`: at most 50 items, and the true count.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Degraded {
    /// How many artefacts were dropped.
    pub count: usize,
    /// The first 50.
    pub items: Vec<DegradedItem>,
}

impl Degraded {
    const MAX_ITEMS: usize = 50;

    /// Records a dropped artefact.
    pub fn push(
        &mut self,
        artifact: Option<&'static str>,
        file: String,
        reason: DegradedReason,
        error_type: Option<String>,
    ) {
        self.count += 1;
        if self.items.len() < Self::MAX_ITEMS {
            self.items.push(DegradedItem {
                artifact,
                file,
                reason,
                error_type,
            });
        }
    }

    /// Whether nothing was dropped.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub(crate) fn log(&self) {
        for item in &self.items {
            tracing::warn!(
                artifact = item.artifact,
                file = %item.file,
                reason = ?item.reason,
                error_type = item.error_type.as_deref(),
                "response degraded"
            );
        }
    }
}
