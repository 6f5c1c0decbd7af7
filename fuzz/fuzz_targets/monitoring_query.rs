#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stan_runtime::fuzzing::monitoring_query(data));
