use std::path::PathBuf;

use clap::Args;

use super::{CliResult, Failure};

use crate::sign::{write_key_file, Algorithm, KeyError, LocalSigner, PASSWORD_ENV};
use crate::sink::with_suffix;
use crate::verify::exit;

#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// `ecdsa-p256` (cosign's default) or `ed25519`.
    #[arg(long, value_name = "ecdsa-p256|ed25519", default_value = "ecdsa-p256", value_parser = super::opts::choice::<Algorithm>())]
    pub algorithm: Algorithm,
    /// Writes PREFIX.key (private) and PREFIX.pub (public), as cosign does.
    #[arg(short = 'o', long, default_value = "cosign")]
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
        // Like cosign, an empty password is allowed, but it must be stated.
        let password = std::env::var(PASSWORD_ENV).map_err(|_| {
            Failure::new(exit::CANNOT_CHECK, format!("set {PASSWORD_ENV} to the password for the new key (it may be empty), or pass --unencrypted"))
        })?;
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
