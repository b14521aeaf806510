//! Saturating deadlines. A timeout becomes `Option<Instant>`: `None` when the duration is too
//! large to add to the clock (such as `Duration::MAX`), which every caller reads as "never".
//! No option or argument can make the clients panic on instant arithmetic.

use std::time::Duration;

/// The instant `after` from now on tokio's clock, `None` for "never".
pub(crate) fn deadline(after: Duration) -> Option<tokio::time::Instant> {
    tokio::time::Instant::now().checked_add(after)
}

/// The instant `after` from now on the std clock (for blocking waits), `None` for "never".
pub(crate) fn deadline_std(after: Duration) -> Option<std::time::Instant> {
    std::time::Instant::now().checked_add(after)
}

/// Sleeps until `deadline`; forever when it is `None`.
pub(crate) async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Runs `fut` until `deadline` (no limit when `None`); `None` if the deadline came first.
pub(crate) async fn run_until<F: std::future::Future>(
    deadline: Option<tokio::time::Instant>,
    fut: F,
) -> Option<F::Output> {
    match deadline {
        Some(at) => tokio::time::timeout_at(at, fut).await.ok(),
        None => Some(fut.await),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_durations_mean_never() {
        assert!(deadline_std(Duration::MAX).is_none());
        assert!(deadline_std(Duration::ZERO).is_some());
    }

    #[tokio::test]
    async fn tokio_deadlines_saturate_too() {
        assert!(deadline(Duration::MAX).is_none());
        assert_eq!(run_until(None, async { 7 }).await, Some(7));
        assert_eq!(
            run_until(deadline(Duration::ZERO), std::future::pending::<()>()).await,
            None
        );
    }
}
