#![no_main]

#[global_allocator]
static ALLOC: stan_runtime::fuzzing::CappedAlloc = stan_runtime::fuzzing::CappedAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| stan_runtime::fuzzing::file_store_recovery(data));
