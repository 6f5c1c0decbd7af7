#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stan_core::fuzzing::config_parser(data));
