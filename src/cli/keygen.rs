use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::sign::{write_key_file, Algorithm, LocalSigner, PASSWORD_ENV};
use crate::verify::exit;

#[derive(Args, Debug)]
pub struct KeygenArgs {
    #[arg(long, value_enum, default_value = "ecdsa-p256")]
    pub algorithm: Algorithm,
    /// Writes PREFIX.key (private) and PREFIX.pub (public), as cosign does.
    #[arg(long, default_value = "cosign")]
    pub output_prefix: PathBuf,
    /// Write the private key as plain PKCS#8 PEM instead of cosign's
    /// encrypted format (for keys held in a secret store that encrypts).
    #[arg(long)]
    pub unencrypted: bool,
}

pub fn keygen(a: KeygenArgs) -> anyhow::Result<i32> {
    let key_path = a.output_prefix.with_extension("key");
    let pub_path = a.output_prefix.with_extension("pub");
    let signer = LocalSigner::generate(a.algorithm)?;
    let private = if a.unencrypted {
        signer.private_key_pem()?
    } else {
        // Like cosign, an empty password is allowed, but it must be stated.
        let password = std::env::var(PASSWORD_ENV).map_err(|_| {
            anyhow::anyhow!("set {PASSWORD_ENV} to the password for the new key (it may be empty), or pass --unencrypted")
        })?;
        signer.encrypted_private_key_pem(password.as_bytes())?
    };
    write_key_file(&key_path, &private, true)?;
    write_key_file(&pub_path, signer.public_key_pem(), false)
        .with_context(|| format!("private key written to {}", key_path.display()))?;
    use crate::sign::Signer;
    eprintln!(
        "Private key written to {}\nPublic key written to {}\nkey id {}",
        key_path.display(),
        pub_path.display(),
        signer.key_id()
    );
    Ok(exit::OK)
}
