//! Signature checks of public-key tokens (RS256/384/512, PS256/384/512, ES256/384) with
//! `ring`, which the TLS stack already brings, in place of the pure-Rust `rsa` and `p256`
//! crates: an RS256 check costs a fraction as much (`bench/verify.rs`), and ring refuses RSA
//! keys under 2048 bits. Everything else (signing, HMAC, EdDSA) stays with `jsonwebtoken`'s
//! own provider, and so does every claim check: only the signature primitive changes.

use jsonwebtoken::{
    Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey,
    crypto::{CryptoProvider, JwtSigner, JwtVerifier, rust_crypto},
    errors::{ErrorKind, Result},
    signature,
};
use ring::signature::{
    self as ring_signature, RsaParameters, RsaPublicKeyComponents, UnparsedPublicKey,
    VerificationAlgorithm,
};

/// The provider: `ring` for public-key signatures, `jsonwebtoken`'s for the rest.
static PROVIDER: std::sync::OnceLock<CryptoProvider> = std::sync::OnceLock::new();

/// Makes this provider the process's (once; later calls change nothing).
pub fn install() {
    let provider = PROVIDER.get_or_init(|| CryptoProvider {
        signer_factory: signer,
        verifier_factory: verifier,
        key_utils: rust_crypto::DEFAULT_PROVIDER.key_utils.clone(),
    });
    // Already installed by an earlier app of this process: it is this one.
    let _ = provider.install_default();
}

fn signer(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    (rust_crypto::DEFAULT_PROVIDER.signer_factory)(algorithm, key)
}

fn verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    use ring_signature as r;
    let check = match algorithm {
        Algorithm::RS256 => Check::Rsa(&r::RSA_PKCS1_2048_8192_SHA256),
        Algorithm::RS384 => Check::Rsa(&r::RSA_PKCS1_2048_8192_SHA384),
        Algorithm::RS512 => Check::Rsa(&r::RSA_PKCS1_2048_8192_SHA512),
        Algorithm::PS256 => Check::Rsa(&r::RSA_PSS_2048_8192_SHA256),
        Algorithm::PS384 => Check::Rsa(&r::RSA_PSS_2048_8192_SHA384),
        Algorithm::PS512 => Check::Rsa(&r::RSA_PSS_2048_8192_SHA512),
        Algorithm::ES256 => Check::Ec(&r::ECDSA_P256_SHA256_FIXED),
        Algorithm::ES384 => Check::Ec(&r::ECDSA_P384_SHA384_FIXED),
        _ => return (rust_crypto::DEFAULT_PROVIDER.verifier_factory)(algorithm, key),
    };
    // A key of another family never checks this algorithm (no HMAC with a public key).
    let family = match check {
        Check::Rsa(_) => AlgorithmFamily::Rsa,
        Check::Ec(_) => AlgorithmFamily::Ec,
    };
    if key.family() != family {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    Ok(Box::new(RingVerifier {
        algorithm: *algorithm,
        check,
        key: key.clone(),
    }))
}

#[derive(Clone, Copy)]
enum Check {
    Rsa(&'static RsaParameters),
    Ec(&'static dyn VerificationAlgorithm),
}

struct RingVerifier {
    algorithm: Algorithm,
    check: Check,
    key: DecodingKey,
}

impl signature::Verifier<Vec<u8>> for RingVerifier {
    fn verify(
        &self,
        message: &[u8],
        signature: &Vec<u8>,
    ) -> std::result::Result<(), signature::Error> {
        let checked = match (self.check, self.key.kind()) {
            (Check::Rsa(params), DecodingKeyKind::RsaModulusExponent { n, e }) => {
                RsaPublicKeyComponents { n, e }.verify(params, message, signature)
            }
            // An RSA key as PKCS#1 DER.
            (Check::Rsa(params), DecodingKeyKind::SecretOrDer(der)) => {
                UnparsedPublicKey::new(params, der).verify(message, signature)
            }
            // An EC point, `0x04 ‖ x ‖ y`, as a JWK gives it.
            (Check::Ec(params), DecodingKeyKind::SecretOrDer(point)) => {
                UnparsedPublicKey::new(params, point).verify(message, signature)
            }
            (Check::Ec(_), DecodingKeyKind::RsaModulusExponent { .. }) => {
                return Err(signature::Error::new());
            }
        };
        checked.map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_public_key_algorithm_never_takes_a_shared_secret() {
        let secret = DecodingKey::from_secret(b"0123456789abcdef0123456789abcdef");

        for algorithm in [Algorithm::RS256, Algorithm::PS256, Algorithm::ES256] {
            assert!(verifier(&algorithm, &secret).is_err(), "{algorithm:?}");
        }
    }
}
