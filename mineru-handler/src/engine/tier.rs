//! MinerU 4 tiers and OCR modes, and how the legacy `backend`/`effort` inputs and the contract's
//! 0-based page numbers map onto them (docs/job-contract.md §16.2–§16.4).

use std::fmt;
use std::str::FromStr;

/// A MinerU 4 capability tier, cheapest first (so `Ord` ranks them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    /// Native text extraction; Office/markup formats and born-digital PDFs. No models.
    Flash,
    /// Classic layout + OCR + formula + table models.
    Basic,
    /// The small models plus the MinerU2.5 VLM.
    Standard,
    /// As standard, with the highest internal effort.
    Advanced,
}

/// How MinerU 4 treats a PDF page's text layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OcrMode {
    /// MinerU classifies each page.
    Auto,
    /// Use the text layer only.
    Txt,
    /// Force OCR.
    Ocr,
}

/// A legacy MinerU 3.4 backend name, still accepted as input (docs/job-contract.md §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// `pipeline`
    Pipeline,
    /// `vlm-auto-engine` (the contract's default)
    VlmAutoEngine,
    /// `vlm-http-client`
    VlmHttpClient,
    /// `hybrid-auto-engine`
    HybridAutoEngine,
    /// `hybrid-http-client`
    HybridHttpClient,
}

/// The legacy `effort` input of the hybrid backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Effort {
    /// `medium`
    Medium,
    /// `high`
    High,
}

/// A name that is not one of an enum's wire spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid {kind}")]
pub struct UnknownName {
    kind: &'static str,
    value: String,
}

macro_rules! wire_names {
    ($ty:ident, $kind:literal, { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every value.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The wire spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }
        }
        impl FromStr for $ty {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    _ => Err(UnknownName { kind: $kind, value: s.to_owned() }),
                }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

wire_names!(Tier, "tier", { Flash => "flash", Basic => "basic", Standard => "standard", Advanced => "advanced" });
wire_names!(OcrMode, "ocr_mode", { Auto => "auto", Txt => "txt", Ocr => "ocr" });
wire_names!(Backend, "backend", {
    Pipeline => "pipeline",
    VlmAutoEngine => "vlm-auto-engine",
    VlmHttpClient => "vlm-http-client",
    HybridAutoEngine => "hybrid-auto-engine",
    HybridHttpClient => "hybrid-http-client",
});
wire_names!(Effort, "effort", { Medium => "medium", High => "high" });

impl Backend {
    /// The MinerU 4 tier a legacy backend (with its effort) maps to (docs/job-contract.md §16.2).
    ///
    /// ```
    /// use mineru_handler::engine::{Backend, Effort, Tier};
    /// assert_eq!(Backend::Pipeline.tier(None), Tier::Basic);
    /// assert_eq!(Backend::HybridAutoEngine.tier(Some(Effort::High)), Tier::Advanced);
    /// ```
    pub fn tier(self, effort: Option<Effort>) -> Tier {
        match (self, effort) {
            (Backend::Pipeline, _) => Tier::Basic,
            (backend, Some(Effort::High)) if backend.is_hybrid() => Tier::Advanced,
            _ => Tier::Standard,
        }
    }

    /// Whether the backend talks to a remote VLM server (`server_url`).
    pub fn is_http_client(self) -> bool {
        matches!(self, Backend::VlmHttpClient | Backend::HybridHttpClient)
    }

    /// `hybrid-*`: the backends that accept `effort`.
    pub fn is_hybrid(self) -> bool {
        matches!(self, Backend::HybridAutoEngine | Backend::HybridHttpClient)
    }
}

/// The tier to send for a job (docs/job-contract.md §16.2): an explicit `tier` wins; otherwise an
/// explicitly sent `backend` (or `effort`, which implies the default backend) is mapped;
/// otherwise the worker's default tier applies.
///
/// ```
/// use mineru_handler::engine::{resolve_tier, Backend, Tier};
/// assert_eq!(resolve_tier(Some(Tier::Flash), None, None, Tier::Standard), Tier::Flash);
/// assert_eq!(resolve_tier(None, Some(Backend::Pipeline), None, Tier::Flash), Tier::Basic);
/// assert_eq!(resolve_tier(None, None, None, Tier::Flash), Tier::Flash);
/// ```
pub fn resolve_tier(
    tier: Option<Tier>,
    explicit_backend: Option<Backend>,
    effort: Option<Effort>,
    default_tier: Tier,
) -> Tier {
    match (tier, explicit_backend, effort) {
        (Some(tier), _, _) => tier,
        (None, Some(backend), effort) => backend.tier(effort),
        (None, None, Some(effort)) => Backend::VlmAutoEngine.tier(Some(effort)),
        (None, None, None) => default_tier,
    }
}

/// The OCR mode to send when the caller sent none (docs/job-contract.md §16.3): the configured
/// default, else `txt` on a flash-only engine (it cannot OCR), else `auto`.
pub fn default_ocr_mode(configured: Option<OcrMode>, highest_tier: Tier) -> OcrMode {
    configured.unwrap_or(if highest_tier == Tier::Flash {
        OcrMode::Txt
    } else {
        OcrMode::Auto
    })
}

/// A page selection in MinerU 4's 1-based inclusive numbering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PageSelection {
    /// First page, 1-based; `None` = from the first page.
    pub first: Option<u64>,
    /// Last page, 1-based inclusive; `None` = to the end of the document.
    pub last: Option<u64>,
}

impl PageSelection {
    /// Every page.
    pub const ALL: PageSelection = PageSelection {
        first: None,
        last: None,
    };

    /// From the contract's 0-based inclusive `start_page`, and `end_page` where any negative
    /// value means "to the end".
    ///
    /// ```
    /// use mineru_handler::engine::PageSelection;
    /// assert_eq!(PageSelection::from_zero_based(0, -1).page_range(), None);
    /// assert_eq!(PageSelection::from_zero_based(2, -1).page_range().as_deref(), Some("3-r1"));
    /// assert_eq!(PageSelection::from_zero_based(1, 2).page_range().as_deref(), Some("2-3"));
    /// ```
    pub fn from_zero_based(start_page: u64, end_page: i64) -> Self {
        PageSelection {
            first: (start_page > 0).then(|| start_page.saturating_add(1)),
            last: u64::try_from(end_page).ok().map(|e| e.saturating_add(1)),
        }
    }

    /// The `page_range` text MinerU 4 expects, or `None` for the whole document.
    pub fn page_range(&self) -> Option<String> {
        match (self.first, self.last) {
            (None, None) => None,
            (first, Some(last)) => Some(format!("{}-{last}", first.unwrap_or(1))),
            (Some(first), None) => Some(format!("{first}-r1")),
        }
    }

    /// Whether this selects the whole document.
    pub fn is_all(&self) -> bool {
        self.page_range().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_backends_map_to_tiers() {
        use Backend::*;
        let cases = [
            (Pipeline, None, Tier::Basic),
            (VlmAutoEngine, None, Tier::Standard),
            (HybridAutoEngine, None, Tier::Standard),
            (HybridAutoEngine, Some(Effort::Medium), Tier::Standard),
            (HybridAutoEngine, Some(Effort::High), Tier::Advanced),
            (VlmHttpClient, None, Tier::Standard),
            (HybridHttpClient, Some(Effort::Medium), Tier::Standard),
            (HybridHttpClient, Some(Effort::High), Tier::Advanced),
        ];
        for (backend, effort, tier) in cases {
            assert_eq!(backend.tier(effort), tier, "{backend} {effort:?}");
        }
    }

    #[test]
    fn explicit_effort_without_backend_maps_the_default_backend() {
        assert_eq!(
            resolve_tier(None, None, Some(Effort::High), Tier::Flash),
            Tier::Standard
        );
    }

    #[test]
    fn names_round_trip() {
        for t in Tier::ALL {
            assert_eq!(t.as_str().parse::<Tier>().ok(), Some(*t));
        }
        for b in Backend::ALL {
            assert_eq!(b.as_str().parse::<Backend>().ok(), Some(*b));
        }
        assert!("fast".parse::<Tier>().is_err());
    }

    #[test]
    fn pages_map_to_one_based_ranges() {
        assert_eq!(
            PageSelection::from_zero_based(0, 0).page_range().as_deref(),
            Some("1-1")
        );
        assert_eq!(
            PageSelection::from_zero_based(0, 4).page_range().as_deref(),
            Some("1-5")
        );
        assert_eq!(
            PageSelection::from_zero_based(5, -7)
                .page_range()
                .as_deref(),
            Some("6-r1")
        );
        assert!(PageSelection::from_zero_based(0, -1).is_all());
    }

    #[test]
    fn flash_only_engines_default_to_txt() {
        assert_eq!(default_ocr_mode(None, Tier::Flash), OcrMode::Txt);
        assert_eq!(default_ocr_mode(None, Tier::Standard), OcrMode::Auto);
        assert_eq!(
            default_ocr_mode(Some(OcrMode::Ocr), Tier::Flash),
            OcrMode::Ocr
        );
    }
}
