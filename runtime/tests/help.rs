//! The usage text is part of the command-line interface: scripts and documentation
//! quote it, so every change to it must be deliberate.

use stan_runtime::cli::{parse, Command, USAGE};

#[test]
fn usage_text() {
    assert_eq!(parse(&["-h".to_string()]), Ok(Command::Help));
    // The snapshot ignores blank lines at either end, so the Go framing (one blank
    // line before, one after) is checked here.
    assert!(USAGE.starts_with("\nUsage: nats-streaming-server [options]\n"));
    assert!(USAGE.ends_with("Show help on TLS options\n\n"));
    insta::with_settings!({ snapshot_path => "../../snapshots" }, {
        insta::assert_snapshot!("help", USAGE);
    });
}
