//! The mutual challenge handshake of `multiprocessing.connection`.
//!
//! Both sides prove they know the authkey: the server delivers a challenge
//! and checks the client's answer, then answers the client's challenge.
//!
//! Two dialects exist and a server must speak both:
//! - Python 3.12+ sends `#CHALLENGE#{sha256}` + 40 random bytes and answers
//!   `{digest}` + HMAC over the whole message (the `{digest}` prefix is
//!   covered by the MAC, so it cannot be downgraded).
//! - Python 3.11 and older send `#CHALLENGE#` + 20 random bytes and answer
//!   with a bare 16-byte HMAC-MD5 over whatever message they received.
//!
//! The functions here are pure (no I/O) so the event loop can drive them
//! frame by frame and the Rust client can reuse them.

use hmac::{Hmac, KeyInit, Mac};
use thiserror::Error;

pub const CHALLENGE_PREFIX: &[u8] = b"#CHALLENGE#";
pub const WELCOME: &[u8] = b"#WELCOME#";
pub const FAILURE: &[u8] = b"#FAILURE#";
/// Random bytes in a modern challenge (CPython's `MESSAGE_LENGTH`).
pub const MESSAGE_LENGTH: usize = 40;
/// Frames read before authentication completes are capped like CPython's
/// `recv_bytes(256)`, so an unauthenticated peer cannot make us buffer more.
pub const PRE_AUTH_FRAME_LIMIT: usize = 256;

const LEGACY_MESSAGE_LENGTH: usize = 20;
const MD5_DIGEST_LENGTH: usize = 16;
const MAX_DIGEST_NAME_LEN: usize = 8; // "sha3_256"

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("digest received was wrong")]
    WrongDigest,
    #[error("unsupported digest {0:?}")]
    UnsupportedDigest(String),
    #[error("legacy HMAC-MD5 answers are refused by this server")]
    Md5Refused,
    #[error("unsupported message length, missing digest prefix, or unsupported digest")]
    Malformed,
    #[error("protocol error, expected challenge")]
    NotAChallenge,
    #[error("challenge too short: {0} bytes")]
    ChallengeTooShort(usize),
    #[error("digest sent was rejected")]
    Rejected,
}

/// The MAC algorithms CPython's `_ALLOWED_DIGESTS` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Digest {
    Md5,
    Sha256,
    Sha384,
    Sha3_256,
    Sha3_384,
}

impl Digest {
    fn from_name(name: &[u8]) -> Option<Digest> {
        Some(match name {
            b"md5" => Digest::Md5,
            b"sha256" => Digest::Sha256,
            b"sha384" => Digest::Sha384,
            b"sha3_256" => Digest::Sha3_256,
            b"sha3_384" => Digest::Sha3_384,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Digest::Md5 => "md5",
            Digest::Sha256 => "sha256",
            Digest::Sha384 => "sha384",
            Digest::Sha3_256 => "sha3_256",
            Digest::Sha3_384 => "sha3_384",
        }
    }
}

fn mac_of<M: Mac + KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// HMAC of `message` under `key` with the given digest.
pub fn hmac(digest: Digest, key: &[u8], message: &[u8]) -> Vec<u8> {
    match digest {
        Digest::Md5 => mac_of::<Hmac<md5::Md5>>(key, message),
        Digest::Sha256 => mac_of::<Hmac<sha2::Sha256>>(key, message),
        Digest::Sha384 => mac_of::<Hmac<sha2::Sha384>>(key, message),
        Digest::Sha3_256 => mac_of::<hmac::SimpleHmac<sha3::Sha3_256>>(key, message),
        Digest::Sha3_384 => mac_of::<hmac::SimpleHmac<sha3::Sha3_384>>(key, message),
    }
}

/// Splits a challenge or an answer into its digest and payload, as CPython's
/// `_get_digest_name_and_payload`: 16- and 20-byte messages are the legacy
/// unprefixed MD5 form (`None`); everything else must carry `{digest}`.
fn digest_and_payload(message: &[u8]) -> Result<(Option<Digest>, &[u8]), AuthError> {
    if message.len() == LEGACY_MESSAGE_LENGTH || message.len() == MD5_DIGEST_LENGTH {
        return Ok((None, message));
    }
    if message.first() == Some(&b'{') {
        let search_end = message.len().min(MAX_DIGEST_NAME_LEN + 2);
        if let Some(close) = message[1..search_end].iter().position(|&b| b == b'}') {
            let name = &message[1..1 + close];
            return match Digest::from_name(name) {
                Some(d) => Ok((Some(d), &message[close + 2..])),
                None => Err(AuthError::UnsupportedDigest(String::from_utf8_lossy(name).into_owned())),
            };
        }
    }
    Err(AuthError::Malformed)
}

/// Constant-time equality: the time taken does not depend on where the
/// first differing byte is.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A challenge this server sent: `message` is what the MAC must cover.
#[derive(Debug, Clone)]
pub struct Challenge {
    message: Vec<u8>,
}

impl Challenge {
    /// A modern `{sha256}` challenge with fresh random bytes. Legacy clients
    /// answer it too: they MAC the whole message with MD5.
    pub fn new() -> Challenge {
        let mut random = [0u8; MESSAGE_LENGTH];
        getrandom::fill(&mut random).expect("the OS random source is available");
        Challenge::from_random(&random)
    }

    /// A challenge with given random bytes (tests, reproducible vectors).
    pub fn from_random(random: &[u8]) -> Challenge {
        let mut message = b"{sha256}".to_vec();
        message.extend_from_slice(random);
        Challenge { message }
    }

    /// The frame payload to send: `#CHALLENGE#` + message.
    pub fn frame(&self) -> Vec<u8> {
        let mut out = CHALLENGE_PREFIX.to_vec();
        out.extend_from_slice(&self.message);
        out
    }

    /// Checks a client's answer as CPython's `_verify_challenge` does.
    /// `allow_md5` false refuses answers from legacy (<= 3.11) clients.
    pub fn verify(&self, key: &[u8], answer: &[u8], allow_md5: bool) -> Result<(), AuthError> {
        let (digest, mac) = digest_and_payload(answer)?;
        let digest = digest.unwrap_or(Digest::Md5);
        if digest == Digest::Md5 && !allow_md5 {
            return Err(AuthError::Md5Refused);
        }
        let expected = hmac(digest, key, &self.message);
        if constant_time_eq(&expected, mac) { Ok(()) } else { Err(AuthError::WrongDigest) }
    }
}

impl Default for Challenge {
    fn default() -> Self {
        Challenge::new()
    }
}

/// Answers a peer's challenge frame (`#CHALLENGE#...`) in the dialect the
/// peer used, as CPython's `answer_challenge` / `_create_response`.
pub fn answer_challenge(key: &[u8], frame: &[u8]) -> Result<Vec<u8>, AuthError> {
    let message = frame.strip_prefix(CHALLENGE_PREFIX).ok_or(AuthError::NotAChallenge)?;
    if message.len() < LEGACY_MESSAGE_LENGTH {
        return Err(AuthError::ChallengeTooShort(message.len()));
    }
    match digest_and_payload(message)? {
        (None, _) => Ok(hmac(Digest::Md5, key, message)),
        (Some(digest), _) => {
            let mut out = format!("{{{}}}", digest.name()).into_bytes();
            out.extend_from_slice(&hmac(digest, key, message));
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    // Vectors computed with CPython 3.11:
    //   hmac.new(b'secret', msg, name).hexdigest()
    #[test]
    fn hmac_vectors_match_cpython() {
        let msg = b"{sha256}0123456789012345678901234567890123456789";
        assert_eq!(hex(&hmac(Digest::Md5, b"secret", msg)), "ef311782db3cbcf879cf593ba8490f69");
        assert_eq!(
            hex(&hmac(Digest::Sha256, b"secret", msg)),
            "57221c32cd0aa3e90893e11ffda2be7449c1517591a532039a0a1ee16b4b0f5b"
        );
    }

    #[test]
    fn legacy_and_modern_answers_verify() {
        let ch = Challenge::from_random(&[7u8; MESSAGE_LENGTH]);
        let legacy = hmac(Digest::Md5, b"k", &ch.message);
        assert_eq!(ch.verify(b"k", &legacy, true), Ok(()));
        assert_eq!(ch.verify(b"k", &legacy, false), Err(AuthError::Md5Refused));
        for d in [Digest::Md5, Digest::Sha256, Digest::Sha384, Digest::Sha3_256, Digest::Sha3_384] {
            let mut answer = format!("{{{}}}", d.name()).into_bytes();
            answer.extend_from_slice(&hmac(d, b"k", &ch.message));
            assert_eq!(ch.verify(b"k", &answer, true), Ok(()), "{d:?}");
            assert_eq!(ch.verify(b"other", &answer, true), Err(AuthError::WrongDigest));
        }
        assert_eq!(ch.verify(b"k", b"{sha1}abc", true), Err(AuthError::UnsupportedDigest("sha1".into())));
        assert_eq!(ch.verify(b"k", b"garbage-of-odd-length", true), Err(AuthError::Malformed));
        // A truncated MAC of the right digest is wrong, not a panic.
        assert_eq!(ch.verify(b"k", b"{sha256}short", true), Err(AuthError::WrongDigest));
    }

    #[test]
    fn answers_in_the_peers_dialect() {
        let legacy = [CHALLENGE_PREFIX, &[1u8; 20]].concat();
        let a = answer_challenge(b"k", &legacy).unwrap();
        assert_eq!(a, hmac(Digest::Md5, b"k", &[1u8; 20]));
        let modern = [CHALLENGE_PREFIX, b"{sha256}", &[2u8; 40]].concat();
        let a = answer_challenge(b"k", &modern).unwrap();
        assert!(a.starts_with(b"{sha256}"));
        assert_eq!(&a[8..], &hmac(Digest::Sha256, b"k", &modern[CHALLENGE_PREFIX.len()..])[..]);
        assert_eq!(answer_challenge(b"k", b"#WELCOME#"), Err(AuthError::NotAChallenge));
        assert_eq!(answer_challenge(b"k", b"#CHALLENGE#short"), Err(AuthError::ChallengeTooShort(5)));
    }

    #[test]
    fn constant_time_eq_works() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
