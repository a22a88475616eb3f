#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| baatkaro_proto::fuzzing::roundtrip_values(data));
