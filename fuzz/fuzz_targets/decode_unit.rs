//! Fuzzes the unit decoder: any bytes give a decoded, valid message or a
//! clear error, never a panic; a decoded message re-encodes and decodes to
//! itself.
#![no_main]

use ioc_model::{decode_input, Input, InputKind, Timestamp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let now = Timestamp::from_unix_millis(1_795_420_800_000);
    if let Ok(Input::Unit(msg)) = decode_input(InputKind::Unit, data, now) {
        let bytes = serde_json::to_vec(&msg).expect("a decoded message serializes");
        match decode_input(InputKind::Unit, &bytes, now) {
            Ok(Input::Unit(again)) => assert_eq!(again, msg),
            other => panic!("re-encoded message does not decode to itself: {other:?}"),
        }
    }
});
