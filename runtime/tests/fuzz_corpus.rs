//! Replays the corpora of the runtime's fuzz targets (fuzz/corpus/<target>/) and a
//! bounded number of generated inputs through their entry points, so the stable test
//! run exercises them.

use proptest::prelude::*;
use stan_runtime::fuzzing;

#[global_allocator]
static ALLOC: fuzzing::CappedAlloc = fuzzing::CappedAlloc;

fn replay(target: &str, f: fn(&[u8])) -> usize {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .expect("corpus folder exists")
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in &entries {
        f(&std::fs::read(path).unwrap());
    }
    entries.len()
}

#[test]
fn monitoring_query_corpus_replays() {
    assert!(replay("monitoring_query", fuzzing::monitoring_query) > 0);
}

#[test]
fn file_store_recovery_corpus_replays() {
    assert!(replay("file_store_recovery", fuzzing::file_store_recovery) > 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn generated_monitoring_queries(
        path in 0u8..0x20,
        query in "([a-z_]{1,8}(=[-+%0-9a-zA-Z._>*]{0,12})?&?){0,4}",
    ) {
        let mut data = vec![path];
        data.extend_from_slice(query.as_bytes());
        fuzzing::monitoring_query(&data);
    }

    #[test]
    fn generated_store_directories(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        fuzzing::file_store_recovery(&data);
    }

    /// Mostly well-formed directories: all files valid but the few the last mode byte
    /// chooses.
    #[test]
    fn generated_valid_store_directories(
        flags: u8,
        last_modes: u8,
        rest in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut data = vec![flags, 0, 0, last_modes];
        data.extend(rest);
        fuzzing::file_store_recovery(&data);
    }

    #[test]
    fn generated_monitoring_bytes(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        fuzzing::monitoring_query(&data);
    }
}
