//! Counted slots per key (an identity): at most `cap` held at once, each given back
//! when its guard drops. Used for connections and sessions per device.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The slots held, by key.
#[derive(Debug, Clone, Default)]
pub struct Slots {
    held: Arc<Mutex<HashMap<String, usize>>>,
}

/// One slot, given back on drop.
#[derive(Debug)]
pub struct Slot {
    held: Arc<Mutex<HashMap<String, usize>>>,
    key: String,
}

impl Slots {
    /// Takes a slot for `key` if fewer than `cap` are held.
    pub fn take(&self, key: &str, cap: usize) -> Option<Slot> {
        let mut held = self.held.lock().ok()?;
        let count = held.entry(key.to_string()).or_insert(0);
        if *count >= cap.max(1) {
            return None;
        }
        *count += 1;
        Some(Slot { held: self.held.clone(), key: key.to_string() })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut held) = self.held.lock()
            && let Some(count) = held.get_mut(&self.key)
        {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn slots_are_capped_per_key_and_given_back() {
        let slots = Slots::default();
        let a = slots.take("a", 2).unwrap();
        let _b = slots.take("a", 2).unwrap();
        assert!(slots.take("a", 2).is_none());
        assert!(slots.take("b", 2).is_some());
        drop(a);
        assert!(slots.take("a", 2).is_some());
    }
}
