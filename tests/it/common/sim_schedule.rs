//! The schedule of `tests/it/sim.rs`: what happens to the simulated network, in order, as a
//! pure function of a seed. No clock, no OS randomness, no thread timing: the same seed
//! gives the same [`Schedule`] on every machine and every run (pinned by a unit test in
//! `tests/it/sim.rs`). The PRNG is splitmix64, written out here so its output can never change
//! with a dependency's version.

use std::fmt;

use super::sim_net::LinkMode;

/// The splitmix64 generator (Steele, Lea, Flood 2014): one u64 of state.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi` (the modulo bias is irrelevant at these ranges).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    pub fn index(&mut self, len: usize) -> usize {
        usize::try_from(self.range(0, u64::try_from(len).unwrap() - 1)).unwrap()
    }

    /// Two different indices below `len` (`len >= 2`).
    pub fn pair(&mut self, len: usize) -> (usize, usize) {
        let a = self.index(len);
        let b = (a + 1 + self.index(len - 1)) % len;
        (a, b)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.range(1, 100) <= percent
    }
}

/// How a side of the forked feed reaches its node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Door {
    /// `Node::offer_entries`, the door a peer's batch comes in by.
    Offer,
    /// `Node::import` of a CSV export.
    Import,
}

/// One step. The runner executes steps one after the other; inside a step, appends on
/// different nodes run at once, and sync runs in the background all the time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Each listed node appends this many entries to its own feed; all nodes at once.
    Appends(Vec<(usize, u64)>),
    /// One link changes mode.
    Link { a: usize, b: usize, mode: LinkMode },
    /// Every link between `side` and the other nodes is partitioned.
    Partition { side: Vec<usize> },
    /// Every link back to [`LinkMode::Pass`].
    HealAll,
    /// The network runs on for this long (simulated time passing, not a wait for anything).
    Run { ms: u64 },
    /// A clean stop, `down_ms` down, a start from the same data directory.
    Restart { node: usize, down_ms: u64 },
    /// A clean stop, a copy of the data directory kept as the node's backup, a start; the
    /// step ends once the node's fence lets it append (so the appends that follow make the
    /// backup older than the feed).
    Backup { node: usize },
    /// The node is stopped and started again from its backup (older than its feed: appends
    /// came after the backup), trying `appends` own appends at once while it catches up.
    Restore { node: usize, appends: u64 },
    /// One side of the forked feed is handed to one node.
    Fork {
        side: usize,
        node: usize,
        door: Door,
    },
}

/// The forked key's two feeds: `shared` common entries, then `a_len` and `b_len` entries
/// that differ from the first one on (same seqs, different values).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForkPlan {
    pub shared: u64,
    pub lens: [u64; 2],
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub seed: u64,
    pub nodes: usize,
    pub fork: ForkPlan,
    pub ops: Vec<Op>,
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {} with {} nodes, forked key {:?}:",
            self.seed, self.nodes, self.fork
        )?;
        for (i, op) in self.ops.iter().enumerate() {
            writeln!(f, "  {i:>2}: {op:?}")?;
        }
        write!(f, "  end: HealAll, wake every dialer, wait for quiescence")
    }
}

/// Random steps per schedule (before the backup, restore and fork steps are added).
const RANDOM_STEPS: std::ops::RangeInclusive<u64> = 12..=20;

/// The schedule of `seed`.
pub fn schedule(seed: u64) -> Schedule {
    let mut rng = SplitMix64::new(seed);
    let nodes = usize::try_from(rng.range(5, 10)).unwrap();
    let steps = rng.range(*RANDOM_STEPS.start(), *RANDOM_STEPS.end());
    let mut ops: Vec<Op> = (0..steps).map(|_| random_op(&mut rng, nodes)).collect();

    // The forked key: each side handed to a different node, at any two points.
    let (a, b) = rng.pair(nodes);
    for (side, node) in [(0, a), (1, b)] {
        let at = rng.index(ops.len() + 1);
        let door = if rng.chance(50) {
            Door::Offer
        } else {
            Door::Import
        };
        ops.insert(at, Op::Fork { side, node, door });
    }

    // One node is backed up, appends, and is restored from the older copy later on.
    let restored = rng.index(nodes);
    let backup_at = rng.index(ops.len() + 1);
    ops.insert(backup_at, Op::Backup { node: restored });
    ops.insert(
        backup_at + 1,
        Op::Appends(vec![(restored, rng.range(1, 5))]),
    );
    let restore_at = backup_at + 2 + rng.index(ops.len() - backup_at - 1);
    ops.insert(
        restore_at,
        Op::Restore {
            node: restored,
            appends: rng.range(1, 4),
        },
    );

    let fork = ForkPlan {
        shared: rng.range(0, 2),
        lens: [rng.range(1, 3), rng.range(1, 3)],
    };
    Schedule {
        seed,
        nodes,
        fork,
        ops,
    }
}

fn random_op(rng: &mut SplitMix64, nodes: usize) -> Op {
    match rng.range(1, 100) {
        1..=35 => {
            let writers = rng.range(1, u64::try_from(nodes).unwrap());
            let mut appends: Vec<(usize, u64)> = Vec::new();
            for _ in 0..writers {
                let node = rng.index(nodes);
                let count = rng.range(1, 8);
                if !appends.iter().any(|(n, _)| *n == node) {
                    appends.push((node, count));
                }
            }
            appends.sort_unstable();
            Op::Appends(appends)
        }
        36..=58 => {
            let (a, b) = rng.pair(nodes);
            Op::Link {
                a,
                b,
                mode: random_fault(rng),
            }
        }
        59..=68 => {
            let size = rng.range(1, u64::try_from(nodes / 2).unwrap());
            let mut side: Vec<usize> = Vec::new();
            while u64::try_from(side.len()).unwrap() < size {
                let node = rng.index(nodes);
                if !side.contains(&node) {
                    side.push(node);
                }
            }
            side.sort_unstable();
            Op::Partition { side }
        }
        69..=76 => Op::HealAll,
        77..=92 => Op::Run {
            ms: rng.range(20, 400),
        },
        _ => Op::Restart {
            node: rng.index(nodes),
            down_ms: rng.range(0, 300),
        },
    }
}

fn random_fault(rng: &mut SplitMix64) -> LinkMode {
    match rng.range(1, 6) {
        1 => LinkMode::Partitioned,
        2 => LinkMode::Delay {
            ms: rng.range(1, 150),
        },
        3 => LinkMode::Hold,
        4 => LinkMode::CutAfter {
            bytes: rng.range(64, 16 * 1024),
        },
        5 => LinkMode::FlipAt {
            offset: rng.range(0, 8 * 1024),
        },
        _ => LinkMode::Pass,
    }
}
