//! The secret of a launcher run as the environment gives it (`PP_SECRET` or
//! `PP_SECRET_FILE`, read as a client reads them), or none: then rank 0 generates one.

use super::error::LauncherError;

/// Where the run's secret comes from.
#[derive(Debug)]
pub(super) enum SecretSource {
    /// `PP_SECRET`, or the content of `PP_SECRET_FILE` (trailing white space removed).
    Env(Vec<u8>),
    /// Neither is set.
    None,
}

/// Reads `PP_SECRET` or `PP_SECRET_FILE`.
///
/// # Errors
/// Both set, or a file that cannot be read or is empty.
pub(super) fn secret_from_env() -> Result<SecretSource, LauncherError> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    match (var("PP_SECRET"), var("PP_SECRET_FILE")) {
        (Some(_), Some(_)) => Err(LauncherError::Secret(
            "both PP_SECRET and PP_SECRET_FILE are set: set only one".into(),
        )),
        (Some(secret), None) => Ok(SecretSource::Env(secret.into_bytes())),
        (None, Some(path)) => {
            let text = std::fs::read(&path).map_err(|e| {
                LauncherError::Secret(format!("cannot read PP_SECRET_FILE `{path}`: {e}"))
            })?;
            let secret = text.trim_ascii_end();
            if secret.is_empty() {
                return Err(LauncherError::Secret(format!(
                    "PP_SECRET_FILE `{path}` is empty"
                )));
            }
            Ok(SecretSource::Env(secret.to_vec()))
        }
        (None, None) => Ok(SecretSource::None),
    }
}
