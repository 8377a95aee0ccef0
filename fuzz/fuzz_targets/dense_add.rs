#![no_main]
//! See densparse_core::fuzzing::dense_add: must never panic, whatever the bytes.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| densparse_core::fuzzing::dense_add(data));
