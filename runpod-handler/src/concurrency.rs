//! How many jobs the worker runs at once: fixed, or re-evaluated before every take like the
//! SDK's `concurrency_modifier`.

use std::fmt;
use std::num::NonZeroUsize;

/// The concurrency policy.
///
/// ```
/// use runpod_handler::Concurrency;
///
/// let fixed = Concurrency::fixed(4);
/// // Grow up to 8 while the worker keeps up, as the SDK's modifier would.
/// let dynamic = Concurrency::dynamic(|current| (current + 1).min(8));
/// # let _ = (fixed, dynamic);
/// ```
pub struct Concurrency {
    current: usize,
    modifier: Option<Box<dyn FnMut(usize) -> usize + Send>>,
    warned_zero: bool,
}

impl Concurrency {
    /// Always `n` jobs at once (at least one).
    pub fn fixed(n: usize) -> Self {
        Self {
            current: n.max(1),
            modifier: None,
            warned_zero: false,
        }
    }

    /// Starts at one; `modifier(current)` gives the next value. A change waits until the worker
    /// holds no job, as in the SDK; values below one are raised to one.
    pub fn dynamic(modifier: impl FnMut(usize) -> usize + Send + 'static) -> Self {
        Self {
            current: 1,
            modifier: Some(Box::new(modifier)),
            warned_zero: false,
        }
    }

    /// The concurrency to take jobs for now, or `None` while a change waits for the worker to
    /// be empty.
    pub(crate) fn target(&mut self, occupied: usize) -> Option<usize> {
        let Some(modifier) = self.modifier.as_mut() else {
            return Some(self.current);
        };
        let mut wanted = modifier(self.current);
        if wanted == 0 {
            if !self.warned_zero {
                tracing::warn!("The concurrency modifier returned 0; using 1.");
                self.warned_zero = true;
            }
            wanted = 1;
        }
        if wanted == self.current {
            Some(self.current)
        } else if occupied == 0 {
            tracing::debug!("Concurrency set to {wanted}.");
            self.current = wanted;
            Some(wanted)
        } else {
            None
        }
    }
}

/// The policy to run: the code's when it set one (it knows what its handler can take), else
/// `RUNPOD_MAX_CONCURRENCY` as a fixed value, else one job at a time.
pub(crate) fn choose(code: Option<Concurrency>, env: Option<NonZeroUsize>) -> Concurrency {
    match (code, env) {
        (Some(code), Some(env)) => {
            tracing::info!(
                "RUNPOD_MAX_CONCURRENCY={env} is not used: the worker sets its own concurrency."
            );
            code
        }
        (Some(code), None) => code,
        (None, Some(env)) => Concurrency::fixed(env.get()),
        (None, None) => Concurrency::default(),
    }
}

impl Default for Concurrency {
    fn default() -> Self {
        Self::fixed(1)
    }
}

impl fmt::Debug for Concurrency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Concurrency")
            .field("current", &self.current)
            .field("dynamic", &self.modifier.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_wait_for_an_empty_worker_and_zero_is_clamped() {
        let mut c = Concurrency::dynamic(|n| if n < 3 { 3 } else { 0 });
        assert_eq!(c.target(1), None);
        assert_eq!(c.target(0), Some(3));
        assert_eq!(c.target(2), None);
        assert_eq!(c.target(0), Some(1));
        assert_eq!(Concurrency::fixed(0).target(5), Some(1));
    }

    #[test]
    fn the_code_wins_over_the_environment_which_wins_over_one() {
        let three = NonZeroUsize::new(3);
        assert_eq!(choose(None, three).target(0), Some(3));
        assert_eq!(
            choose(Some(Concurrency::fixed(2)), three).target(0),
            Some(2)
        );
        assert_eq!(choose(None, None).target(0), Some(1));
    }
}
