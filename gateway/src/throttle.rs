//! Warnings that an outage repeats for every queued item (the homeserver or a provider down
//! while hundreds of cases wait) are written at most once per interval, each saying how many
//! like it were left out since the last: the log shows the outage and its size, and stays
//! readable.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

/// At most one line per `every`.
pub struct Throttle {
    every: Duration,
    /// When a line was last let through, and how many were held back since.
    state: Mutex<Option<(Instant, u64)>>,
}

impl Throttle {
    /// A throttle letting one line through per `every`.
    pub const fn new(every: Duration) -> Self {
        Self {
            every,
            state: Mutex::new(None),
        }
    }

    /// `Some(left_out)` if a line may be written now, `left_out` being the lines held back
    /// since the last one; `None` if this one is to be held back.
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().expect("not poisoned");
        match &mut *state {
            Some((last, held)) if now.duration_since(*last) < self.every => {
                *held += 1;
                None
            }
            _ => {
                let held = state.map_or(0, |(_, held)| held);
                *state = Some((now, 0));
                Some(held)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_counting_what_was_held_back() {
        let throttle = Throttle::new(Duration::from_secs(30));
        let start = Instant::now();
        assert_eq!(throttle.allow_at(start), Some(0));
        for i in 1..=500 {
            assert_eq!(
                throttle.allow_at(start + Duration::from_millis(i * 10)),
                None
            );
        }
        assert_eq!(
            throttle.allow_at(start + Duration::from_secs(31)),
            Some(500)
        );
        assert_eq!(throttle.allow_at(start + Duration::from_secs(32)), None);
        assert_eq!(throttle.allow_at(start + Duration::from_secs(62)), Some(1));
    }
}
