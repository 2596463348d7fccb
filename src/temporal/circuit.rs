//! The circuit of the read paths that ask Temporal (a running release's live tree, a
//! bootstrap's workflow summary): it opens on a timeout, or after [`ERRORS_TO_OPEN`] errors in
//! a row, and reads then answer from the projections at once instead of each waiting out
//! `TEMPORAL_QUERY_TIMEOUT_MS`. One timeout is enough: every reader of a release shares its
//! one live query, so a single timeout already cost all of them the whole wait, and waiting
//! for three would make the first seconds of an outage three timeouts long.
//!
//! While open, a probe (`GetSystemInfo`) runs in the background at most every
//! [`PROBE_EVERY`], started by a read: when Temporal answers it, the circuit closes. No request
//! ever waits for the probe, so the first seconds of an outage cost the reads in flight when it
//! began and nothing after.
//!
//! Writes (starts, control signals) do not go through it: they have their own outbox and
//! retries, and an error there is the caller's answer.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

/// Errors in a row (answers other than a timeout, such as a refused connection) that open the
/// circuit; they cost the readers little, so a stray one does not.
pub const ERRORS_TO_OPEN: u32 = 3;
/// How often a probe runs while the circuit is open (started by the first read after this).
pub const PROBE_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct State {
    /// Errors in a row since the last success.
    errors: u32,
    /// Open since then, with the last probe started at the second instant.
    open: Option<(Instant, Instant)>,
    /// A probe is running.
    probing: bool,
}

/// What [`Circuit::check`] says about one read.
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    /// Closed: ask Temporal.
    Ask,
    /// Open: do not ask; serve the projection.
    Skip,
    /// Open, and a probe is due: do not ask, start a probe in the background.
    SkipAndProbe,
}

/// The read circuit's state, shared by every read path of a process.
#[derive(Debug)]
pub struct Circuit {
    state: Mutex<State>,
    /// `bff_temporal_circuit_open`: 1 while open.
    gauge: prometheus::IntGauge,
}

impl Circuit {
    /// A closed circuit.
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State::default()),
            gauge: crate::metrics::gauge(
                "bff_temporal_circuit_open",
                "1 while reads stop asking Temporal after failures in a row (served from the projections), until a background probe succeeds.",
            ),
        }
    }

    /// The gauge, for the app's metrics registry.
    pub fn gauge(&self) -> prometheus::IntGauge {
        self.gauge.clone()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere cannot leave these counters inconsistent: keep using them.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a read may ask Temporal now.
    pub fn check(&self, now: Instant) -> Check {
        let mut state = self.state();
        let Some((since, probed)) = state.open else {
            return Check::Ask;
        };
        if state.probing || now.duration_since(probed) < PROBE_EVERY {
            return Check::Skip;
        }
        state.probing = true;
        state.open = Some((since, now));
        Check::SkipAndProbe
    }

    /// A read (or a probe) got its answer.
    pub fn succeeded(&self) {
        let mut state = self.state();
        if let Some((since, _)) = state.open.take() {
            tracing::info!(
                temporal.circuit_open_ms = since.elapsed().as_millis() as u64,
                "Temporal answers again; reads ask it again"
            );
            self.gauge.set(0);
        }
        state.errors = 0;
        state.probing = false;
    }

    /// A read (or a probe) timed out (`timed_out`) or failed.
    pub fn failed(&self, now: Instant, timed_out: bool) {
        let mut state = self.state();
        state.errors = state.errors.saturating_add(1);
        state.probing = false;
        if state.open.is_none() && (timed_out || state.errors >= ERRORS_TO_OPEN) {
            state.open = Some((now, now));
            self.gauge.set(1);
            tracing::warn!(
                temporal.timed_out = timed_out,
                temporal.errors = state.errors,
                "Temporal reads fail; serving the projections without asking until a probe succeeds"
            );
        }
    }
}

impl Default for Circuit {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_in_a_row_open_it_and_a_successful_probe_closes_it() {
        let circuit = Circuit::new();
        let start = Instant::now();

        for _ in 0..ERRORS_TO_OPEN - 1 {
            circuit.failed(start, false);
        }
        assert_eq!(circuit.check(start), Check::Ask, "not yet");
        circuit.failed(start, false);
        assert_eq!(circuit.check(start), Check::Skip, "open");
        assert_eq!(circuit.gauge.get(), 1);
        let later = start + PROBE_EVERY;
        assert_eq!(circuit.check(later), Check::SkipAndProbe, "a probe is due");
        assert_eq!(circuit.check(later), Check::Skip, "one probe at a time");
        circuit.failed(later, true);
        assert_eq!(
            circuit.check(later),
            Check::Skip,
            "still open after a failed probe"
        );
        assert_eq!(
            circuit.check(later + PROBE_EVERY),
            Check::SkipAndProbe,
            "the next probe comes a period later"
        );
        circuit.succeeded();
        assert_eq!(circuit.check(later + PROBE_EVERY), Check::Ask, "closed");
        assert_eq!(circuit.gauge.get(), 0);
    }

    #[test]
    fn one_timeout_opens_it_and_a_success_between_errors_starts_their_count_again() {
        let timed_out = Circuit::new();
        let erring = Circuit::new();
        let now = Instant::now();

        timed_out.failed(now, true);
        for _ in 0..ERRORS_TO_OPEN - 1 {
            erring.failed(now, false);
        }
        erring.succeeded();
        for _ in 0..ERRORS_TO_OPEN - 1 {
            erring.failed(now, false);
        }

        assert_eq!(timed_out.check(now), Check::Skip);
        assert_eq!(erring.check(now), Check::Ask);
    }
}
