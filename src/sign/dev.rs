//! `provenant run` without a key: a development key created once in a
//! directory and used with a warning on every use. Fine for trying it
//! out, worthless as evidence.
use super::providers::{SignerConfig, SignerProvider};
use super::{write_key_file, Algorithm, KeyError, LocalSigner, Signer};

pub struct DevKey;

impl SignerProvider for DevKey {
    fn name(&self) -> &'static str {
        "development key"
    }

    fn wanted(&self, c: &SignerConfig) -> bool {
        c.dev_key_dir.is_some()
    }

    fn fallback(&self) -> bool {
        true
    }

    fn open(&self, c: &SignerConfig) -> Result<Box<dyn Signer>, KeyError> {
        let dir = c.dev_key_dir.as_deref().ok_or(KeyError::NoSigner)?;
        let key = dir.join("dev.key");
        let signer = if key.exists() {
            LocalSigner::load(&key)?
        } else {
            std::fs::create_dir_all(dir).map_err(|source| KeyError::Write {
                path: dir.to_path_buf(),
                source,
            })?;
            let s = LocalSigner::generate(Algorithm::EcdsaP256)?;
            write_key_file(&key, &s.private_key_pem()?, true)?;
            write_key_file(&dir.join("dev.pub"), s.public_key_pem(), false)?;
            s
        };
        tracing::warn!(
            key = %key.display(),
            public_key = %dir.join("dev.pub").display(),
            "SIGNING WITH A DEVELOPMENT KEY: anyone with access to this directory can forge attestations; pass --key for real use"
        );
        Ok(Box::new(signer))
    }
}
