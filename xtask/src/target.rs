//! A performance target as `cargo xtask bench` measured it: what the report and the chart
//! both show.

/// One of the performance targets, as measured.
pub struct Target {
    pub name: String,
    pub measured: f64,
    pub limit: f64,
    /// The measured value must be at most the target (else at least).
    pub at_most: bool,
    /// Where one exists, the same ratio for the least any program at that hook can do,
    /// measured in the same run (an empty program for the flood, the least filter or capture
    /// for the kernel programs): a target the floor does not meet is out of reach.
    pub floor: Option<f64>,
    /// For ratios of small, noisy quantities (target 3): 90 % bootstrap intervals over the
    /// rounds, of the measurement and of the floor. A floor counts as out of reach only when
    /// its whole interval misses the target.
    pub intervals: Option<[(f64, f64); 2]>,
}

impl Target {
    /// A target, unless the measurement is missing (NaN); a missing floor is dropped.
    pub fn new(
        name: String,
        measured: f64,
        limit: f64,
        at_most: bool,
        floor: Option<f64>,
    ) -> Option<Self> {
        measured.is_finite().then(|| Self {
            name,
            measured,
            limit,
            at_most,
            floor: floor.filter(|f| f.is_finite()),
            intervals: None,
        })
    }
    /// How far along the target the measurement is: 1 or less meets it.
    pub fn of_target(&self) -> f64 {
        self.of_target_at(self.measured)
    }
    /// [`Target::of_target`] for another measurement of the same ratio.
    pub fn of_target_at(&self, measured: f64) -> f64 {
        if self.at_most {
            measured / self.limit
        } else {
            self.limit / measured
        }
    }
    pub fn met(&self) -> bool {
        self.of_target() <= 1.0
    }
    /// Whether even the floor misses the target.
    pub fn out_of_reach(&self) -> bool {
        // The floor's most favourable end, where it is known to be noisy.
        let best = match (self.floor, self.intervals) {
            (Some(_), Some([_, (lo, hi)])) => Some(if self.at_most { lo } else { hi }),
            (floor, _) => floor,
        };
        best.is_some_and(|f| self.of_target_at(f) > 1.0)
    }
}
