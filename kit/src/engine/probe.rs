//! Whether the proxy honours `HeaderStopIteration`, learnt from the
//! requests whose headers the kit holds.
//!
//! Upstream Envoy honours it only when the Wasm `PluginConfig` sets
//! `allow_on_headers_stop_iteration: true`; otherwise (and on Higress for
//! ABI 0.2.1 modules) it turns it into stop-all, and the body never reaches
//! the filter while its headers are held. The kit cannot read that setting,
//! so it learns it: a body chunk arriving while headers are held proves it
//! honoured; a request held for [`HOLD_PROBE`] with no body is let go
//! (dropping `content-length` when the plugin may rewrite the body), and
//! [`PROBE_MISSES`] such requests before any proof of the contrary prove it
//! ignored: the kit then stops holding headers.
//!
//! [`Probe`] is that reasoning alone: the engine tells it what happened and
//! hands it the time; it never reads a clock or touches a request.

use core::time::Duration;

/// How long a request may sit with its headers held before the kit lets it
/// go without its body.
pub(super) const HOLD_PROBE: Duration = Duration::from_millis(100);

/// How many held requests in a row must miss their body before the kit
/// concludes the proxy never delivers it. One slow upload alone proves
/// nothing; each miss costs its request [`HOLD_PROBE`] of latency.
const PROBE_MISSES: u8 = 3;

/// What the kit knows of the proxy's handling of held headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum StopIteration {
    /// No proof either way yet: held requests are timed.
    Unknown,
    /// A body arrived while headers were held.
    Honoured,
    /// Held requests missed their body [`PROBE_MISSES`] times.
    Ignored,
}

/// What a tick asks of the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Tick {
    /// The probe is not running: nothing to do.
    Idle,
    /// The probe has just ended: the fast tick is no longer wanted.
    Stop,
    /// Look for held requests that are overdue.
    Scan,
}

/// The probe's state: the verdict so far, the misses counted towards it,
/// and whether it wants the fast tick.
#[derive(Clone, Copy, Debug)]
pub(super) struct Probe {
    verdict: StopIteration,
    misses: u8,
    ticking: bool,
}

impl Probe {
    /// A probe with no verdict and no tick.
    pub(super) const fn new() -> Self {
        Probe {
            verdict: StopIteration::Unknown,
            misses: 0,
            ticking: false,
        }
    }

    /// The verdict so far.
    pub(super) fn verdict(&self) -> StopIteration {
        self.verdict
    }

    /// Whether the probe wants the fast tick.
    pub(super) fn ticking(&self) -> bool {
        self.ticking
    }

    /// The time to stamp a held request with: `clock` is read only while
    /// the verdict is out, as later no stamp is ever compared.
    pub(super) fn stamp(&self, clock: impl FnOnce() -> u64) -> u64 {
        if self.verdict == StopIteration::Unknown {
            clock()
        } else {
            0
        }
    }

    /// Headers were held for a body. Returns whether the fast tick must
    /// start now, to time them.
    pub(super) fn held(&mut self) -> bool {
        if self.verdict == StopIteration::Unknown && !self.ticking {
            self.ticking = true;
            return true;
        }
        false
    }

    /// A body arrived while its headers were held: the proxy honours
    /// `HeaderStopIteration`, unless already proved otherwise.
    pub(super) fn body_while_held(&mut self) {
        if self.verdict == StopIteration::Unknown {
            self.verdict = StopIteration::Honoured;
        }
    }

    /// A tick came: whether to look for overdue requests. Once honoured
    /// the probe stops wanting ticks.
    pub(super) fn tick(&mut self) -> Tick {
        if !self.ticking {
            return Tick::Idle;
        }
        if self.verdict == StopIteration::Honoured {
            self.ticking = false;
            return Tick::Stop;
        }
        Tick::Scan
    }

    /// Whether headers held since `held_since` have waited too long for
    /// their body at `now` (both in nanoseconds).
    pub(super) fn overdue(held_since: u64, now: u64) -> bool {
        let limit = u64::try_from(HOLD_PROBE.as_nanos()).unwrap_or(u64::MAX);
        now.saturating_sub(held_since) >= limit
    }

    /// An overdue request was let go without its body. Returns true when
    /// this miss settles the verdict as ignored.
    pub(super) fn missed(&mut self) -> bool {
        self.misses = self.misses.saturating_add(1);
        if self.verdict == StopIteration::Unknown && self.misses >= PROBE_MISSES {
            self.verdict = StopIteration::Ignored;
            return true;
        }
        false
    }

    /// A scan is over. Returns true when the probe stops wanting ticks
    /// because the verdict is ignored.
    pub(super) fn scanned(&mut self) -> bool {
        if self.verdict == StopIteration::Ignored {
            self.ticking = false;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROBE: u64 = 100_000_000;

    #[test]
    fn a_body_while_held_proves_it_honoured_and_ends_the_tick() {
        let mut probe = Probe::new();
        assert!(probe.held());
        assert!(!probe.held(), "the tick starts once");
        probe.body_while_held();
        assert_eq!(probe.verdict(), StopIteration::Honoured);
        assert_eq!(probe.tick(), Tick::Stop);
        assert_eq!(probe.tick(), Tick::Idle);
        assert!(!probe.held(), "no tick once the verdict is in");
        assert_eq!(probe.stamp(|| unreachable!("no clock once honoured")), 0);
    }

    #[test]
    fn three_misses_prove_it_ignored_and_later_proof_changes_nothing() {
        let mut probe = Probe::new();
        assert!(probe.held());
        assert_eq!(probe.stamp(|| 7), 7);
        assert_eq!(probe.tick(), Tick::Scan);
        assert!(!probe.missed());
        assert!(!probe.missed());
        assert!(!probe.scanned());
        assert!(probe.missed());
        assert!(!probe.missed(), "the verdict is settled once");
        assert!(probe.scanned());
        assert_eq!(probe.tick(), Tick::Idle);
        probe.body_while_held();
        assert_eq!(probe.verdict(), StopIteration::Ignored);
    }

    #[test]
    fn held_headers_are_overdue_after_the_probe_time() {
        assert!(!Probe::overdue(1_000, 1_000 + PROBE - 1));
        assert!(Probe::overdue(1_000, 1_000 + PROBE));
        assert!(!Probe::overdue(5_000, 1_000), "a clock going back waits");
    }
}
