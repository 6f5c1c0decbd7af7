//! A seed fixes the whole run: running it again gives the same trace, to the byte.

mod common;

use stan_sim::Options;

#[test]
fn the_same_seed_gives_the_same_trace_hash() {
    let first = common::run_all(1000..1020, None, Options::default());
    let second = common::run_all(1000..1020, None, Options::default());
    for (a, b) in first.iter().zip(&second) {
        assert_eq!(a.seed, b.seed);
        if a.hash != b.hash {
            let diverged = a.entries.iter().zip(&b.entries).position(|(x, y)| x != y);
            panic!(
                "seed {} ({}) gave trace hashes {:016x} and {:016x}; first difference at event {:?}",
                a.seed,
                a.scenario.name(),
                a.hash,
                b.hash,
                diverged
            );
        }
    }
    // Different seeds really do differ, so equal hashes above mean something.
    let mut hashes: Vec<u64> = first.iter().map(|r| r.hash).collect();
    hashes.sort_unstable();
    hashes.dedup();
    assert_eq!(hashes.len(), first.len());
    assert!(
        first.iter().all(|r| r.entries.len() > 50),
        "runs too small to tell anything"
    );
}
