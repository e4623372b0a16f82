//! Both halves of the challenge handshake on hostile frames: checking a
//! client's answer to our challenge, and answering a client's challenge.
//! Neither may panic; only a correct MAC may pass.
#![no_main]

use fastmanager::wire::handshake::{answer_challenge, hmac, Challenge, Digest, MESSAGE_LENGTH};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let key_len = (sel as usize >> 2).min(rest.len());
    let (key, frame) = rest.split_at(key_len);
    let challenge = Challenge::from_random(&[sel; MESSAGE_LENGTH]);
    let allow_md5 = sel & 1 == 1;
    if challenge.verify(key, frame, allow_md5).is_ok() {
        // Only a real MAC of our message passes: a forged answer must not.
        let mut message = b"{sha256}".to_vec();
        message.extend_from_slice(&[sel; MESSAGE_LENGTH]);
        let real = [Digest::Md5, Digest::Sha256, Digest::Sha384, Digest::Sha3_256, Digest::Sha3_384]
            .iter()
            .any(|&d| frame.ends_with(&hmac(d, key, &message)));
        assert!(real, "a forged answer passed");
    }
    if let Ok(answer) = answer_challenge(key, frame) {
        assert!(!answer.is_empty());
    }
});
