//! Passwords, stored only as Argon2id PHC strings (`$argon2id$v=19$m=19456,t=2,p=1$…`):
//! hashing for `ftpcalc hash-password`, checking a stored string when the configuration is
//! loaded, and verifying a login. Verification costs tens of milliseconds of CPU and the
//! hash's memory on purpose; callers run it on the blocking pool and bound how many run at once.

use argon2::{Algorithm, Argon2, PasswordHash, PasswordHasher, PasswordVerifier};

/// Most memory (KiB) a stored hash may ask for: a hostile or mistyped configuration must not
/// make every login allocate gigabytes.
pub const MAX_MEMORY_KIB: u32 = 256 * 1024;
/// Most iterations a stored hash may ask for.
pub const MAX_ITERATIONS: u32 = 16;
/// Most lanes a stored hash may ask for.
pub const MAX_LANES: u32 = 8;

/// Why a stored password hash is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// Not a PHC string.
    #[error("not a password hash (expected the $argon2id$... line `ftpcalc hash-password` prints)")]
    Malformed,
    /// A PHC string of another algorithm.
    #[error("the hash is {0}, not argon2id (hash the password with `ftpcalc hash-password`)")]
    Algorithm(String),
    /// Parameters beyond the bounds.
    #[error(
        "the hash's parameters are out of bounds (m <= {MAX_MEMORY_KIB} KiB, t <= {MAX_ITERATIONS}, p <= {MAX_LANES})"
    )]
    Parameters,
}

/// Hashes `password` with Argon2id and its recommended parameters (m=19456 KiB, t=2, p=1) and
/// a random salt; returns the PHC string.
pub fn hash(password: &str) -> Result<String, argon2::password_hash::Error> {
    Ok(Argon2::default().hash_password(password.as_bytes())?.to_string())
}

/// Checks that `stored` is an Argon2id PHC string within the bounds.
pub fn check(stored: &str) -> Result<(), PasswordError> {
    let parsed = PasswordHash::new(stored).map_err(|_| PasswordError::Malformed)?;
    if parsed.algorithm.as_str() != Algorithm::Argon2id.ident().as_str() {
        return Err(PasswordError::Algorithm(parsed.algorithm.to_string()));
    }
    let params = argon2::Params::try_from(&parsed).map_err(|_| PasswordError::Parameters)?;
    if params.m_cost() > MAX_MEMORY_KIB || params.t_cost() > MAX_ITERATIONS || params.p_cost() > MAX_LANES {
        return Err(PasswordError::Parameters);
    }
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err(PasswordError::Malformed);
    }
    Ok(())
}

/// True when `password` matches the PHC string `stored` (which [`check`] accepted). Blocks for
/// the hash's cost.
pub fn verify(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_only_their_password() {
        let stored = hash("correct horse").expect("hash");
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{stored}");
        check(&stored).expect("a valid hash");
        assert!(verify("correct horse", &stored));
        assert!(!verify("correct horsE", &stored));
        assert!(!verify("", &stored));
        assert_ne!(stored, hash("correct horse").expect("hash"), "a fresh salt each time");
    }

    #[test]
    fn stored_hashes_are_checked() {
        assert_eq!(check("hunter2"), Err(PasswordError::Malformed));
        assert_eq!(check(""), Err(PasswordError::Malformed));
        let argon2i = "$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$iekCn0Y3spW+sCcFanM2xBT63UP2sghkUoHLIUpWRS8";
        assert!(matches!(check(argon2i), Err(PasswordError::Algorithm(_))));
        let huge = "$argon2id$v=19$m=4194304,t=2,p=1$c2FsdHNhbHQ$iekCn0Y3spW+sCcFanM2xBT63UP2sghkUoHLIUpWRS8";
        assert_eq!(check(huge), Err(PasswordError::Parameters));
        assert!(!verify("x", "not a hash"));
    }
}
