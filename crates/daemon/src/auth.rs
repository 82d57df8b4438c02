//! Principals and their bearer tokens. Only the SHA-256 of a token is ever
//! kept; when no principal is configured the daemon creates an `admin`
//! principal and writes its token to `STATE_DIR/admin.token` (mode 0600).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::config::{Principal, PrincipalRole};

/// The file the generated admin token is written to, in the state dir.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// Hex SHA-256 of a token.
pub fn token_sha256(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether two hex strings are equal ignoring ASCII case, comparing every
/// byte whatever the differences (the lengths of SHA-256 hex are public).
fn same_hex(a: &str, b: &str) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.bytes().zip(b.bytes()).fold(0u8, |diff, (x, y)| {
        diff | (x.to_ascii_lowercase() ^ y.to_ascii_lowercase())
    }) == 0
}

/// The principals the daemon accepts.
#[derive(Debug, Clone)]
pub struct Principals(Vec<Principal>);

impl Principals {
    pub fn new(list: Vec<Principal>) -> Self {
        Principals(list)
    }

    /// The principal a bearer token belongs to. The token's hash is compared
    /// with every principal's in constant time, without stopping at a match,
    /// so the time taken says nothing about how close a guess came or which
    /// principal it matched.
    pub fn find(&self, token: &str) -> Option<&Principal> {
        let hash = token_sha256(token);
        let mut found = None;
        for p in &self.0 {
            if same_hex(&p.token_sha256, &hash) && found.is_none() {
                found = Some(p);
            }
        }
        found
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The principals to use: the configured ones, or, when there are none, an
/// `admin` principal whose token is read from (or first written to)
/// `state_dir/admin.token`. Returns the principals and, when the token file
/// was just created, its path.
pub fn principals(configured: &[Principal], state_dir: &Path) -> Result<(Principals, Option<PathBuf>), String> {
    if !configured.is_empty() {
        return Ok((Principals::new(configured.to_vec()), None));
    }
    let path = state_dir.join(ADMIN_TOKEN_FILE);
    let existing = match std::fs::read_to_string(&path) {
        Ok(t) => Some(t.trim().to_string()).filter(|t| !t.is_empty()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(format!(
                "cannot read {}: {e}; fix its permissions or delete it to get a new token",
                path.display()
            ))
        }
    };
    let (token, created) = match existing {
        Some(t) => (t, None),
        None => {
            let token = new_token()?;
            write_private(&path, &token)?;
            (token, Some(path.clone()))
        }
    };
    let admin = Principal {
        name: "admin".into(),
        roles: vec![PrincipalRole::Admin],
        token_sha256: token_sha256(&token),
    };
    Ok((Principals::new(vec![admin]), created))
}

/// 32 random bytes from the operating system, as hex.
fn new_token() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("cannot read random bytes for the admin token from /dev/urandom: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn write_private(path: &Path, token: &str) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            format!(
                "cannot create {}: {e}; check the state dir's permissions",
                path.display()
            )
        })?;
    f.write_all(format!("{token}\n").as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_comparison_ignores_case_and_needs_every_byte() {
        assert!(same_hex("abcDEF01", "ABCdef01"));
        assert!(!same_hex("abcdef01", "abcdef02"));
        assert!(!same_hex("0bcdef01", "abcdef01"));
        assert!(!same_hex("abc", "abcd"));
    }

    #[test]
    fn sha256_of_a_known_token() {
        assert_eq!(
            token_sha256("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn admin_token_is_created_once_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (first, created) = principals(&[], dir.path()).unwrap();
        let path = created.expect("created on first start");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let token = std::fs::read_to_string(&path).unwrap();
        assert_eq!(first.find(token.trim()).map(|p| p.name.as_str()), Some("admin"));
        let (second, created) = principals(&[], dir.path()).unwrap();
        assert!(created.is_none(), "the existing token is kept");
        assert!(second.find(token.trim()).is_some());
        assert!(second.find("wrong").is_none());
    }

    #[test]
    fn configured_principals_replace_the_admin_token() {
        let dir = tempfile::tempdir().unwrap();
        let alice = Principal {
            name: "alice".into(),
            roles: vec![PrincipalRole::Deployer],
            token_sha256: token_sha256("alice-token"),
        };
        let (p, created) = principals(std::slice::from_ref(&alice), dir.path()).unwrap();
        assert!(created.is_none());
        assert!(!dir.path().join(ADMIN_TOKEN_FILE).exists());
        assert_eq!(p.find("alice-token"), Some(&alice));
    }
}
