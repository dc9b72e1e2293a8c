//! The district's accounts: who may sign in to the review desk and the dashboard,
//! with which role. Passwords are stored as argon2id hashes only.

use fivestar_core::Role;
use fivestar_store::CachedSql;
use fivestar_store::StoreError;
use fivestar_store::rusqlite::{OptionalExtension, params};

use super::HubStore;

/// What an account may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountRole {
    /// Reviews: the office (every star) or one star's task force.
    Reviewer(Role),
    /// Watches the dashboard and status; does not review.
    Operator,
}

impl serde::Serialize for AccountRole {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.as_text())
    }
}

impl AccountRole {
    /// `office`, `star:<key>` or `operator`, as stored.
    pub fn as_text(&self) -> String {
        match self {
            AccountRole::Reviewer(Role::Office) => "office".into(),
            AccountRole::Reviewer(Role::TaskForce(star)) => format!("star:{star}"),
            AccountRole::Operator => "operator".into(),
        }
    }

    /// Reads `office`, `operator`, `star:<key>` (or a bare star key).
    pub fn parse(text: &str) -> Result<AccountRole, String> {
        let t = text.trim();
        match t {
            "office" => Ok(AccountRole::Reviewer(Role::Office)),
            "operator" => Ok(AccountRole::Operator),
            other => {
                let star = other.strip_prefix("star:").unwrap_or(other);
                if fivestar_core::standard::is_key(star) {
                    Ok(AccountRole::Reviewer(Role::TaskForce(star.to_string())))
                } else {
                    Err(format!(
                        "role {t:?}: use office, operator, or star:<key> for a star's task force"
                    ))
                }
            }
        }
    }

    /// The star this account reviews, if it is one star's task force.
    pub fn star(&self) -> Option<&str> {
        match self {
            AccountRole::Reviewer(Role::TaskForce(star)) => Some(star),
            _ => None,
        }
    }

    /// Whether the account may review at all.
    pub fn reviews(&self) -> bool {
        matches!(self, AccountRole::Reviewer(_))
    }
}

/// One account.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Account {
    /// The sign-in name (a-z, 0-9, '-').
    pub name: String,
    /// The name shown, in Chinese (e.g. 王敏).
    pub display: String,
    /// What it may do.
    pub role: AccountRole,
    /// A disabled account cannot sign in or review.
    pub disabled: bool,
    /// The argon2id hash of its password.
    #[serde(skip)]
    pub password_hash: String,
}

impl HubStore {
    /// Every account, by name.
    pub fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        let conn = self.docs.conn();
        let mut stmt = conn
            .prepare(
                "SELECT name, display, role, password_hash, disabled FROM accounts ORDER BY name",
            )
            .map_err(|e| self.docs.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })
            .map_err(|e| self.docs.err(e))?;
        let mut accounts = Vec::new();
        for row in rows {
            let (name, display, role, password_hash, disabled) =
                row.map_err(|e| self.docs.err(e))?;
            let role = AccountRole::parse(&role).unwrap_or(AccountRole::Operator);
            accounts.push(Account { name, display, role, disabled: disabled != 0, password_hash });
        }
        Ok(accounts)
    }

    /// One account.
    pub fn account(&self, name: &str) -> Result<Option<Account>, StoreError> {
        Ok(self.accounts()?.into_iter().find(|a| a.name == name))
    }

    /// Adds an account; `false` when the name is taken.
    pub fn add_account(&self, account: &Account, now_ms: i64) -> Result<bool, StoreError> {
        let added = self
            .docs
            .conn()
            .cached_execute(
                "INSERT OR IGNORE INTO accounts (name, display, role, password_hash, disabled, created_ms, changed_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                params![
                    account.name,
                    account.display,
                    account.role.as_text(),
                    account.password_hash,
                    i64::from(account.disabled),
                    now_ms
                ],
            )
            .map_err(|e| self.docs.err(e))?;
        Ok(added == 1)
    }

    /// Sets an account's password hash; `false` when there is no such account.
    pub fn set_password(&self, name: &str, hash: &str, now_ms: i64) -> Result<bool, StoreError> {
        let changed = self
            .docs
            .conn()
            .cached_execute(
                "UPDATE accounts SET password_hash = ?2, changed_ms = ?3 WHERE name = ?1",
                params![name, hash, now_ms],
            )
            .map_err(|e| self.docs.err(e))?;
        Ok(changed == 1)
    }

    /// Disables (or enables) an account; `false` when there is no such account.
    pub fn set_disabled(
        &self,
        name: &str,
        disabled: bool,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let changed = self
            .docs
            .conn()
            .cached_execute(
                "UPDATE accounts SET disabled = ?2, changed_ms = ?3 WHERE name = ?1",
                params![name, i64::from(disabled), now_ms],
            )
            .map_err(|e| self.docs.err(e))?;
        Ok(changed == 1)
    }

    /// Whether any account exists (then every page needs a sign-in).
    pub fn has_accounts(&self) -> Result<bool, StoreError> {
        let found: Option<i64> = self
            .docs
            .conn()
            .cached_row("SELECT 1 FROM accounts LIMIT 1", [], |r| r.get(0))
            .optional()
            .map_err(|e| self.docs.err(e))?;
        Ok(found.is_some())
    }
}

/// Hashes a password (argon2id, salted).
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|e| e.to_string())?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Checks a password against its stored hash.
pub fn password_matches(password: &str, hash: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(hash)
        .map(|parsed| {
            argon2::Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok()
        })
        .unwrap_or(false)
}
