//! A process-wide counting semaphore bounding how many test servers are
//! alive at once (tests run as threads of one process).

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, OnceLock};
use std::thread::{self, ThreadId};

/// Most local servers alive at once: two source/destination pairs, which is
/// what a 2-core machine running 2 test threads can hold.
pub const MAX_LOCAL_SERVERS: usize = 4;

struct Slots {
    capacity: usize,
    state: Mutex<SlotState>,
    freed: Condvar,
}

#[derive(Default)]
struct SlotState {
    in_use: usize,
    by_thread: HashMap<ThreadId, usize>,
}

/// Server slots held by a guard; released when dropped.
pub(crate) struct Permit {
    count: usize,
    thread: ThreadId,
}

impl Permit {
    /// Splits one slot off this permit (which must hold at least two) so
    /// each server of a pair owns its own slot.
    pub(crate) fn split_one(&mut self) -> Permit {
        assert!(
            self.count >= 2,
            "cannot split a permit of {} slot(s)",
            self.count
        );
        self.count -= 1;
        Permit {
            count: 1,
            thread: self.thread,
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let slots = slots();
        let mut state = slots.state.lock().unwrap_or_else(|e| e.into_inner());
        state.in_use -= self.count;
        if let Some(held) = state.by_thread.get_mut(&self.thread) {
            *held -= self.count;
            if *held == 0 {
                state.by_thread.remove(&self.thread);
            }
        }
        slots.freed.notify_all();
    }
}

fn slots() -> &'static Slots {
    static SLOTS: OnceLock<Slots> = OnceLock::new();
    SLOTS.get_or_init(|| Slots {
        // Against real deployments a pair takes every slot: scenarios
        // sharing the two deployments must not overlap.
        capacity: if crate::support::real_deployment().is_some() {
            2
        } else {
            MAX_LOCAL_SERVERS
        },
        state: Mutex::new(SlotState::default()),
        freed: Condvar::new(),
    })
}

/// Blocks until `count` slots are free and takes them atomically.
///
/// A thread that already holds slots is never blocked (it may go over the
/// limit): otherwise two tests each holding a pair and asking for one more
/// server would deadlock.
pub(crate) fn acquire(count: usize) -> Permit {
    let slots = slots();
    let count = count.min(slots.capacity);
    let me = thread::current().id();
    let mut state = slots.state.lock().unwrap_or_else(|e| e.into_inner());
    while state.in_use + count > slots.capacity && !state.by_thread.contains_key(&me) {
        state = slots.freed.wait(state).unwrap_or_else(|e| e.into_inner());
    }
    state.in_use += count;
    *state.by_thread.entry(me).or_default() += count;
    Permit { count, thread: me }
}
