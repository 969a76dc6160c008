//! The access key that signs ring discovery requests, and the AWS shared-credentials file
//! format it may come from.

use std::fmt;
use std::path::{Path, PathBuf};

/// A secret string: readable only through [`Secret::expose`], never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for signing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// An access key: the id (not secret, AWS logs it too) and the secret access key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The access key id (`AKID...`).
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: Secret,
}

/// Reads an AWS shared-credentials file: `aws_access_key_id` and `aws_secret_access_key` of
/// the `[default]` section, or of the top of a file without sections. `#` and `;` start
/// comments; key names ignore case. Errors never quote the file's content.
pub fn read_credentials_file(path: &Path) -> Result<Credentials, CredentialsFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| CredentialsFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_credentials(&text).map_err(|reason| CredentialsFileError::Parse {
        path: path.to_owned(),
        reason,
    })
}

/// Why a shared-credentials file gave no key. Never quotes the file's content.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsFileError {
    /// The file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a shared-credentials document with a `[default]` key.
    #[error("{}: {reason}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the line.
        reason: String,
    },
}

/// The key of a shared-credentials document (see [`read_credentials_file`]).
pub fn parse_credentials(text: &str) -> Result<Credentials, String> {
    let mut section: Option<String> = None;
    let mut saw_sections = false;
    let (mut id, mut secret) = (None, None);
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            saw_sections = true;
            section = Some(name.trim().to_owned());
            continue;
        }
        let in_scope = section.as_deref().is_none_or(|s| s == "default");
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {} is not `key = value`", number + 1));
        };
        if !in_scope {
            continue;
        }
        match key.trim().to_ascii_lowercase().as_str() {
            "aws_access_key_id" => id = Some(value.trim().to_owned()),
            "aws_secret_access_key" => secret = Some(Secret::new(value.trim())),
            _ => {}
        }
    }
    let missing = |what: &str| {
        if saw_sections {
            format!("no {what} in its [default] section")
        } else {
            format!("no {what}")
        }
    };
    Ok(Credentials {
        access_key_id: id.ok_or_else(|| missing("aws_access_key_id"))?,
        secret_access_key: secret.ok_or_else(|| missing("aws_secret_access_key"))?,
    })
}
