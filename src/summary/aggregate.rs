//! [`Aggregate`]: count, sum, min and max of a set of values.

/// Count, sum, min and max of a set of values. Combining two is associative and
/// commutative, which is what makes the summary independent of arrival order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Aggregate {
    pub count: u64,
    pub sum: i128,
    /// `Some((min, max))` once at least one value was added.
    pub range: Option<(i64, i64)>,
}

impl Aggregate {
    pub(crate) fn add(&mut self, value: i64) {
        self.combine(&Aggregate {
            count: 1,
            sum: i128::from(value),
            range: Some((value, value)),
        });
    }

    pub(crate) fn combine(&mut self, other: &Aggregate) {
        // Saturating, not wrapping: neither bound can be reached by a real log (2^64
        // entries), and a saturated figure is less wrong than a wrapped one.
        self.count = self.count.saturating_add(other.count);
        self.sum = self.sum.saturating_add(other.sum);
        self.range = match (self.range, other.range) {
            (Some((a_min, a_max)), Some((b_min, b_max))) => {
                Some((a_min.min(b_min), a_max.max(b_max)))
            }
            (a, b) => a.or(b),
        };
    }

    pub(crate) fn min(&self) -> Option<i64> {
        self.range.map(|(min, _)| min)
    }

    pub(crate) fn max(&self) -> Option<i64> {
        self.range.map(|(_, max)| max)
    }

    pub(crate) fn mean(&self) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        // Integer division first keeps the mean exact to the last bit of the double even
        // when the sum is far beyond 2^53; the casts are the intended rounding to f64.
        let count = i128::from(self.count);
        let quotient = self.sum / count;
        let remainder = self.sum % count;
        Some(quotient as f64 + remainder as f64 / count as f64)
    }
}
