#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| baatkaro_proto::fuzzing::decode_requests(data));
