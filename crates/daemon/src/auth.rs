//! Principals and their bearer tokens. Only the SHA-256 of a token is ever
//! kept. The daemon accepts the union of three sources:
//!
//! - the `[[principals]]` of the configuration;
//! - the principals file, `STATE_DIR/principals.toml`, which `stagecoach
//!   principal add` and `remove` edit and the daemon reads at start and on
//!   SIGHUP;
//! - while no `[[principals]]` are configured, an `admin` principal whose
//!   token the daemon writes to `STATE_DIR/admin.token` (mode 0600) at its
//!   first start.
//!
//! A name may appear in only one of them, and a principal of the file
//! shares its token with no other. [`LivePrincipals`] holds the current set for the API, replaced
//! whole on a reload, so a request sees either the old set or the new one.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{Principal, PrincipalRole};

/// The file the generated admin token is written to, in the state dir.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// The principals file in the state dir (`stagecoach principal add` writes it).
pub const PRINCIPALS_FILE: &str = "principals.toml";

/// Lock file in the state dir that serialises writers of the principals file.
const PRINCIPALS_LOCK: &str = "principals.lock";

/// The name of the generated admin principal.
pub const ADMIN: &str = "admin";

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
#[derive(Debug, Clone, Default)]
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

    pub fn iter(&self) -> impl Iterator<Item = &Principal> {
        self.0.iter()
    }

    /// What changed from `old` to `self`, one phrase per principal (never a
    /// hash): "added mia (manager)", "removed bob", "new roles for …", "new
    /// token for …". Empty when nothing changed.
    pub fn changes_from(&self, old: &Principals) -> Vec<String> {
        let roles = |p: &Principal| p.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ");
        let mut out = vec![];
        for p in &self.0 {
            match old.0.iter().find(|o| o.name == p.name) {
                None => out.push(format!("added {} ({})", p.name, roles(p))),
                Some(o) => {
                    if o.roles != p.roles {
                        out.push(format!("new roles for {}: {} (were {})", p.name, roles(p), roles(o)));
                    }
                    if !same_hex(&o.token_sha256, &p.token_sha256) {
                        out.push(format!("new token for {}", p.name));
                    }
                }
            }
        }
        for o in &old.0 {
            if !self.0.iter().any(|p| p.name == o.name) {
                out.push(format!("removed {}", o.name));
            }
        }
        out
    }
}

/// The principals the API uses now. A reload replaces the whole set at
/// once; a request works with the set it found when it started.
#[derive(Debug, Default)]
pub struct LivePrincipals(RwLock<Arc<Principals>>);

impl LivePrincipals {
    pub fn new(principals: Principals) -> Self {
        LivePrincipals(RwLock::new(Arc::new(principals)))
    }

    /// The current set.
    pub fn current(&self) -> Arc<Principals> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Puts `new` in place and returns the set it replaced.
    pub fn replace(&self, new: Principals) -> Arc<Principals> {
        let mut slot = self.0.write().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *slot, Arc::new(new))
    }
}

impl From<Principals> for LivePrincipals {
    fn from(p: Principals) -> Self {
        LivePrincipals::new(p)
    }
}

/// Whether the daemon generates the `admin` principal (and reads
/// `admin.token`): exactly when no `[[principals]]` are configured. The
/// principals file does not change this, so adding a person with
/// `stagecoach principal add` never locks the admin out.
pub fn admin_is_generated(configured: &[Principal]) -> bool {
    configured.is_empty()
}

/// The principals to use: the configured ones, those of the principals
/// file, and, when none are configured, an `admin` principal whose token is
/// read from (or first written to) `state_dir/admin.token`. Returns the
/// principals and, when the token file was just created, its path.
pub fn principals(configured: &[Principal], state_dir: &Path) -> Result<(Principals, Option<PathBuf>), String> {
    let from_file = read_file(state_dir)?;
    let mut all = configured.to_vec();
    let mut created = None;
    if admin_is_generated(configured) {
        let (admin, new_file) = generated_admin(state_dir)?;
        all.push(admin);
        created = new_file;
    }
    check_file_against(
        &all,
        &from_file,
        configured.is_empty(),
        &state_dir.join(PRINCIPALS_FILE),
    )?;
    all.extend(from_file);
    Ok((Principals::new(all), created))
}

/// The `admin` principal of `state_dir/admin.token`, creating the token
/// file when there is none.
fn generated_admin(state_dir: &Path) -> Result<(Principal, Option<PathBuf>), String> {
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
        name: ADMIN.into(),
        roles: vec![PrincipalRole::Admin],
        token_sha256: token_sha256(&token),
    };
    Ok((admin, created))
}

/// Refuses a principals file whose entries clash with `others` (the
/// configured principals and the generated admin) or with each other: a
/// name in both, or a token that another principal has too.
fn check_file_against(others: &[Principal], file: &[Principal], admin: bool, path: &Path) -> Result<(), String> {
    let path = path.display();
    for p in file {
        if others.iter().any(|o| o.name == p.name) {
            return Err(if admin && p.name == ADMIN {
                format!(
                    "{path}: the name \"{ADMIN}\" belongs to the generated admin principal (admin.token) while no \
                     [[principals]] are configured; remove it with `stagecoach principal remove {ADMIN}` and add it \
                     under another name"
                )
            } else {
                format!(
                    "{path}: principal {:?} is also configured in [[principals]]; a name may appear in only one of \
                     them: remove it from the configuration or with `stagecoach principal remove {}`",
                    p.name, p.name
                )
            });
        }
    }
    for (i, p) in file.iter().enumerate() {
        if let Some(o) = others
            .iter()
            .chain(&file[..i])
            .find(|o| same_hex(&o.token_sha256, &p.token_sha256))
        {
            return Err(format!(
                "{path}: principal {:?} has the same token as {:?}; every principal needs its own token \
                 (`stagecoach principal remove {}` and add it again for a new one)",
                p.name, o.name, p.name
            ));
        }
    }
    Ok(())
}

/// The principals file's contents.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalsFile {
    #[serde(default)]
    principals: Vec<Principal>,
}

/// The principals of `state_dir/principals.toml`; none when the file does
/// not exist. A file that other users may write is refused (whoever can
/// write it can give themselves any role).
pub fn read_file(state_dir: &Path) -> Result<Vec<Principal>, String> {
    use std::os::unix::fs::PermissionsExt;
    let path = state_dir.join(PRINCIPALS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(format!("cannot read {}: {e}; check its permissions", path.display())),
    };
    let mode = std::fs::metadata(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o022 != 0 {
        return Err(format!(
            "{} may be written by other users (mode {:o}), who could give themselves any role; run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        ));
    }
    let file: PrincipalsFile = toml::from_str(&text).map_err(|e| {
        format!(
            "{}: {}; fix the file, or delete it and add its principals again with `stagecoach principal add`",
            path.display(),
            e.to_string().trim_end()
        )
    })?;
    crate::config::validate_principals(&file.principals).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(file.principals)
}

/// Checks a name for `stagecoach principal add`: 1 to 64 characters,
/// letters, digits and `.`, `_`, `-`, `@`, starting with a letter or digit.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a principal name: use 1 to 64 letters, digits, '.', '_', '-' or '@', starting with a \
             letter or digit (e.g. mia or ci-deploy)"
        ))
    }
}

/// Holds the principals file's lock; writers of the file take it first,
/// so two `stagecoach principal add` at once do not lose an entry.
pub struct FileLock(#[allow(dead_code)] std::fs::File);

/// Takes the principals file's lock (waiting for another writer), creating
/// the state dir when needed.
pub fn lock_file(state_dir: &Path) -> Result<FileLock, String> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(state_dir).map_err(|e| {
        format!(
            "cannot create the state dir {}: {e}; check its permissions or pass --state-dir",
            state_dir.display()
        )
    })?;
    let path = state_dir.join(PRINCIPALS_LOCK);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    file.lock()
        .map_err(|e| format!("cannot lock {}: {e}", path.display()))?;
    Ok(FileLock(file))
}

/// Replaces the principals file with `principals`, atomically (a temporary
/// file, synced, renamed over it; mode 0600). Take [`lock_file`] first.
pub fn write_file(state_dir: &Path, principals: &[Principal], _lock: &FileLock) -> Result<(), String> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let path = state_dir.join(PRINCIPALS_FILE);
    let tmp = state_dir.join(format!(".{PRINCIPALS_FILE}.tmp"));
    let body = toml::to_string(&PrincipalsFile {
        principals: principals.to_vec(),
    })
    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let text = format!(
        "# Principals added with `stagecoach principal add`; the daemon reads this file at start\n\
         # and on SIGHUP, beside the [[principals]] of its configuration. Only SHA-256 hashes of\n\
         # the tokens are kept here. Edit with `stagecoach principal add|remove|list`.\n\n{body}"
    );
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(state_dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!(
            "cannot write {}: {e}; check the state dir's permissions",
            path.display()
        )
    })
}

/// A new token: 32 random bytes from the operating system, as hex.
pub fn new_token() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("cannot read random bytes for a token from /dev/urandom: {e}"))?;
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

    fn person(name: &str, role: PrincipalRole) -> Principal {
        Principal {
            name: name.into(),
            roles: vec![role],
            token_sha256: token_sha256(&format!("{name}-token")),
        }
    }

    fn write(dir: &Path, list: &[Principal]) {
        let lock = lock_file(dir).unwrap();
        write_file(dir, list, &lock).unwrap();
    }

    fn names(p: &Principals) -> Vec<&str> {
        p.iter().map(|p| p.name.as_str()).collect()
    }

    #[test]
    fn the_file_adds_to_the_generated_admin_and_to_the_configured_principals() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &[person("mia", PrincipalRole::Manager)]);
        let path = dir.path().join(PRINCIPALS_FILE);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("mia-token\""), "no token in the file: {text}");
        let (p, created) = principals(&[], dir.path()).unwrap();
        assert!(
            created.is_some(),
            "the admin keeps its token beside the file's principals"
        );
        assert_eq!(names(&p), ["admin", "mia"]);
        assert_eq!(p.find("mia-token").map(|p| p.name.as_str()), Some("mia"));
        let alice = person("alice", PrincipalRole::Deployer);
        let (p, _) = principals(std::slice::from_ref(&alice), dir.path()).unwrap();
        assert_eq!(
            names(&p),
            ["alice", "mia"],
            "configured principals replace only the admin"
        );
    }

    #[test]
    fn clashes_between_the_file_and_the_rest_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mia = person("mia", PrincipalRole::Manager);
        write(dir.path(), std::slice::from_ref(&mia));
        let err = principals(std::slice::from_ref(&mia), dir.path()).unwrap_err();
        assert!(err.contains("\"mia\" is also configured in [[principals]]"), "{err}");
        let twin = Principal {
            name: "twin".into(),
            ..mia.clone()
        };
        let err = principals(&[twin], dir.path()).unwrap_err();
        assert!(err.contains("\"mia\" has the same token as \"twin\""), "{err}");
        write(dir.path(), &[person(ADMIN, PrincipalRole::Qa)]);
        let err = principals(&[], dir.path()).unwrap_err();
        assert!(err.contains("belongs to the generated admin principal"), "{err}");
        assert!(principals(&[person("root", PrincipalRole::Admin)], dir.path()).is_ok());
    }

    #[test]
    fn a_broken_or_shared_file_is_refused_with_its_path() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PRINCIPALS_FILE);
        std::fs::write(&path, "[[principals]]\nname = \"x\"\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = read_file(dir.path()).unwrap_err();
        assert!(
            err.starts_with(&path.display().to_string()) && err.contains("missing field"),
            "{err}"
        );
        std::fs::write(
            &path,
            "[[principals]]\nname = \"x\"\nroles = [\"qa\"]\ntoken_sha256 = \"secret\"\n",
        )
        .unwrap();
        let err = read_file(dir.path()).unwrap_err();
        assert!(err.contains("must be 64 hex digits"), "{err}");
        write(dir.path(), &[person("mia", PrincipalRole::Manager)]);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let err = read_file(dir.path()).unwrap_err();
        assert!(err.contains("chmod 600"), "{err}");
    }

    #[test]
    fn changes_name_principals_never_hashes() {
        let before = Principals::new(vec![person("a", PrincipalRole::Qa), person("b", PrincipalRole::Qa)]);
        let mut b = person("b", PrincipalRole::Manager);
        b.token_sha256 = token_sha256("other");
        let after = Principals::new(vec![person("c", PrincipalRole::Devops), b]);
        assert_eq!(
            after.changes_from(&before),
            [
                "added c (devops)",
                "new roles for b: manager (were qa)",
                "new token for b",
                "removed a"
            ]
        );
        assert!(after.changes_from(&after).is_empty());
        let live = LivePrincipals::new(before);
        let old = live.replace(after);
        assert_eq!(names(&old), ["a", "b"]);
        assert_eq!(names(&live.current()), ["c", "b"]);
    }

    #[test]
    fn names_for_the_cli_are_plain() {
        for ok in ["mia", "ci-deploy", "m.lopez@example", "a_1", "7"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", "has space", "tab\t", "ünï", &"x".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
