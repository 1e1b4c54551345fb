use std::path::PathBuf;

use clap::Args;

use zeroize::Zeroizing;

use super::{CannotError, CliResult};
use crate::sign::{write_key_file, Algorithm, KeyError, LocalSigner, PASSWORD_ENV};
use crate::sink::with_suffix;
use crate::verify::exit;

#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// Key algorithm.
    #[arg(long, value_name = "ecdsa-p256|ed25519", default_value = "ecdsa-p256", value_parser = super::opts::choice::<Algorithm>())]
    pub algorithm: Algorithm,
    /// Writes PREFIX.key (private) and PREFIX.pub (public), as cosign does.
    /// The private key is encrypted with the password from COSIGN_PASSWORD,
    /// or asked for twice on the terminal when that is not set.
    #[arg(short = 'o', long, value_name = "PREFIX", default_value = "cosign")]
    pub output_prefix: PathBuf,
    /// Write the private key as plain PKCS#8 PEM instead of cosign's
    /// encrypted format (for keys held in a secret store that encrypts).
    #[arg(long)]
    pub unencrypted: bool,
}

pub fn keygen(a: KeygenArgs) -> CliResult {
    let prefix = &a.output_prefix;
    // `-o /dev/null` must not write `/dev/null.key`: a prefix naming
    // something that is not a file is a mistake, not a place for keys.
    if let Ok(m) = std::fs::symlink_metadata(prefix) {
        if !m.is_file() {
            return Err(KeyError::Write {
                path: prefix.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "--output-prefix names a directory, device, FIFO, socket or link; keygen writes PREFIX.key and PREFIX.pub (give a file name prefix)",
                ),
            }
            .into());
        }
    }
    let key_path = with_suffix(prefix, ".key");
    let pub_path = with_suffix(prefix, ".pub");
    // Both or neither: nothing is written when either file is already there.
    for p in [&key_path, &pub_path] {
        if std::fs::symlink_metadata(p).is_ok() {
            return Err(KeyError::Exists { path: p.clone() }.into());
        }
    }
    let signer = LocalSigner::generate(a.algorithm)?;
    let private = if a.unencrypted {
        signer.private_key_pem()?
    } else {
        let password = new_password()?;
        signer.encrypted_private_key_pem(password.as_bytes())?
    };
    write_key_file(&key_path, &private, true)?;
    if let Err(e) = write_key_file(&pub_path, signer.public_key_pem(), false) {
        // The private key was created by this call a moment ago: without
        // its public half it is only a file to clean up by hand.
        let _ = std::fs::remove_file(&key_path);
        return Err(e.into());
    }
    use crate::sign::Signer;
    eprintln!(
        "Private key written to {}\nPublic key written to {}\nkey id {}",
        key_path.display(),
        pub_path.display(),
        signer.key_id()
    );
    Ok(exit::OK)
}

/// The password for a new encrypted key, as cosign gets it: from
/// COSIGN_PASSWORD when set (an empty value is an empty password), else asked
/// twice on the terminal. Without either there is no way to get one: exit 3,
/// not a hang on a pipe nobody writes to.
fn new_password() -> CliResult<Zeroizing<String>> {
    use std::io::IsTerminal;
    if let Some(p) = std::env::var_os(PASSWORD_ENV) {
        let p = p
            .into_string()
            .map_err(|_| CannotError(format!("{PASSWORD_ENV} is not valid UTF-8")))?;
        return Ok(Zeroizing::new(p));
    }
    if !std::io::stdin().is_terminal() {
        return Err(CannotError(format!(
            "no password for the new key: {PASSWORD_ENV} is not set and standard input is not a terminal to ask on; set {PASSWORD_ENV} (it may be empty) or pass --unencrypted"
        ))
        .into());
    }
    // rpassword reads from /dev/tty with echo off and writes the prompt
    // there, so stdout stays clean for scripts.
    let ask = |prompt: &str| {
        rpassword::prompt_password(prompt)
            .map(Zeroizing::new)
            .map_err(|e| CannotError(format!("cannot read the password from the terminal: {e}")))
    };
    let first = ask("Enter password for private key: ")?;
    let again = ask("Enter password for private key again: ")?;
    if *first != *again {
        return Err(CannotError("passwords do not match; no key written".to_string()).into());
    }
    Ok(first)
}
