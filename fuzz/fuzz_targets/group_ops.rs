#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| baatkaro_proto::fuzzing::group_ops(data));
