//! Replays the fuzz corpora (fuzz/corpus/<target>/) and a bounded number of generated
//! inputs through the fuzz entry points, so the stable test run exercises them.

use proptest::prelude::*;
use stan_core::fuzzing;

fn replay(target: &str, f: fn(&[u8])) -> usize {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut n = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .expect("corpus folder exists")
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        f(&std::fs::read(&path).unwrap());
        n += 1;
    }
    n
}

#[test]
fn corpora_replay_without_panics() {
    assert!(replay("nats_client_codec", fuzzing::nats_client_codec) > 0);
    assert!(replay("nats_server_codec", fuzzing::nats_server_codec) > 0);
    assert!(replay("nats_node", fuzzing::nats_node) > 0);
    assert!(replay("stan_requests", fuzzing::stan_requests) > 0);
    assert!(replay("config_parser", fuzzing::config_parser) > 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
    #[test]
    fn generated_inputs(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        fuzzing::nats_client_codec(&data);
        fuzzing::nats_server_codec(&data);
        fuzzing::nats_node(&data);
        fuzzing::stan_requests(&data);
        fuzzing::config_parser(&data);
    }
}
