//! The client's files: `client.toml`, which gives the connection options a
//! person would otherwise repeat on every command, and `known_servers`,
//! where rkm pins the certificate of an rkmd it reached without a CA.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

/// A client config file or the known-servers file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ClientConfigError {
    #[error("cannot read the client config {}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    #[error("the client config {} is malformed: {reason}; its keys are endpoint, socket, ca, cert, cert_key, cert_key_passphrase_file and server_fingerprint", path.display())]
    Malformed { path: PathBuf, reason: String },
    #[error(
        "rkmd at {address} presented the certificate {presented}, but {} pins {pinned}: this may be an impostor. If the operator renewed rkmd's certificate, check the new fingerprint with them, then delete the line for {address} from that file", path.display()
    )]
    PinMismatch {
        address: String,
        presented: String,
        pinned: String,
        path: PathBuf,
    },
    #[error(
        "no CA and no pin for rkmd at {address}, and no HOME to pin its certificate in: give --ca or --server-fingerprint"
    )]
    NowhereToPin { address: String },
    #[error(
        "line {line} of {} is not `host:port sha256:HEX`: fix or delete it (a damaged pin is never replaced silently)", path.display()
    )]
    MalformedPin { path: PathBuf, line: usize },
    #[error("cannot pin rkmd's certificate in {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// `client.toml`. Relative paths are relative to the file's directory.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientFile {
    pub endpoint: Option<String>,
    pub socket: Option<PathBuf>,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub cert_key: Option<PathBuf>,
    pub cert_key_passphrase_file: Option<PathBuf>,
    pub server_fingerprint: Option<String>,
}

impl ClientFile {
    /// The file given, else the default one if it exists, else nothing.
    ///
    /// # Errors
    /// A given file is missing, or a file is unreadable or malformed.
    pub fn load(given: Option<&Path>) -> Result<Self, ClientConfigError> {
        let path = match given {
            Some(path) => path.to_owned(),
            None => match config_dir().map(|dir| dir.join("client.toml")) {
                Some(path) if path.exists() => path,
                _ => return Ok(Self::default()),
            },
        };
        let text = std::fs::read_to_string(&path).map_err(|error| ClientConfigError::Read {
            path: path.clone(),
            reason: error.to_string(),
        })?;
        let mut file: Self =
            toml::from_str(&text).map_err(|error| ClientConfigError::Malformed {
                path: path.clone(),
                reason: error.message().to_owned(),
            })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for field in [
            &mut file.socket,
            &mut file.ca,
            &mut file.cert,
            &mut file.cert_key,
            &mut file.cert_key_passphrase_file,
        ] {
            if let Some(relative) = field.as_ref().filter(|path| path.is_relative()) {
                *field = Some(base.join(relative));
            }
        }
        Ok(file)
    }
}

/// `$XDG_CONFIG_HOME/rkm`, else `~/.config/rkm`.
fn config_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))
        .map(|dir| dir.join("rkm"))
}

/// Where rkm pins servers' certificates.
pub fn known_servers_file() -> Option<PathBuf> {
    config_dir().map(|dir| dir.join("known_servers"))
}

/// `sha256:<64 lowercase hex>`, from the forms people paste (any case,
/// with or without the prefix, with colons between bytes).
pub fn normalise_fingerprint(given: &str) -> Option<String> {
    let hex: String = given
        .trim()
        .trim_start_matches("sha256:")
        .trim_start_matches("SHA256:")
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit())).then(|| format!("sha256:{hex}"))
}

/// The `known_servers` file: one `host:port sha256:<hex>` per line.
pub struct KnownServers;

impl KnownServers {
    /// The fingerprint pinned for `address`, if any.
    ///
    /// # Errors
    /// The file exists but cannot be read.
    pub fn pinned(path: Option<&Path>, address: &str) -> Result<Option<String>, ClientConfigError> {
        let Some(path) = path else { return Ok(None) };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => {
                return Err(ClientConfigError::Read {
                    path: path.to_owned(),
                    reason: error.to_string(),
                });
            }
        };
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // Any damaged line is refused, not only this address's: a
            // damaged pin skipped would be replaced on first use.
            let pin = line
                .split_once(char::is_whitespace)
                .and_then(|(host, fingerprint)| {
                    Some((host, normalise_fingerprint(fingerprint.trim())?))
                });
            let Some((host, fingerprint)) = pin else {
                return Err(ClientConfigError::MalformedPin {
                    path: path.to_owned(),
                    line: index + 1,
                });
            };
            if host == address {
                return Ok(Some(fingerprint));
            }
        }
        Ok(None)
    }

    /// Accepts `presented` if it is the pinned certificate of `address`;
    /// pins it, and says so, if none is.
    ///
    /// # Errors
    /// Another certificate is pinned, or the pin cannot be written.
    pub fn check_or_pin(
        path: Option<&Path>,
        address: &str,
        presented: &str,
    ) -> Result<(), ClientConfigError> {
        let Some(path) = path else {
            return Err(ClientConfigError::NowhereToPin {
                address: address.to_owned(),
            });
        };
        match Self::pinned(Some(path), address)? {
            Some(pinned) if pinned == presented => Ok(()),
            Some(pinned) => Err(ClientConfigError::PinMismatch {
                address: address.to_owned(),
                presented: presented.to_owned(),
                pinned,
                path: path.to_owned(),
            }),
            None => {
                let write_error = |source| ClientConfigError::Write {
                    path: path.to_owned(),
                    source,
                };
                if let Some(dir) = path.parent() {
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(dir)
                        .map_err(write_error)?;
                }
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(write_error)?;
                writeln!(file, "{address} {presented}").map_err(write_error)?;
                file.sync_all().map_err(write_error)?;
                eprintln!(
                    "rkm: trusting rkmd at {address} on first use: certificate {presented}\nrkm: compare it with the fingerprint the operator gave you; it is pinned in {}",
                    path.display()
                );
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn fingerprints_are_read_in_the_forms_people_paste() {
        let expected = format!("sha256:{HEX}");
        assert_eq!(
            normalise_fingerprint(&expected).as_deref(),
            Some(&*expected)
        );
        assert_eq!(
            normalise_fingerprint(&HEX.to_ascii_uppercase()).as_deref(),
            Some(&*expected)
        );
        let colons: Vec<String> = HEX
            .as_bytes()
            .chunks(2)
            .map(|pair| String::from_utf8_lossy(pair).into_owned())
            .collect();
        assert_eq!(
            normalise_fingerprint(&format!("SHA256:{}", colons.join(":"))).as_deref(),
            Some(&*expected)
        );
        assert_eq!(normalise_fingerprint("sha256:abcd"), None);
        assert_eq!(
            normalise_fingerprint(&format!("sha256:{}", "g".repeat(64))),
            None
        );
    }

    #[test]
    fn first_use_pins_and_a_different_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rkm").join("known_servers");
        let first = format!("sha256:{HEX}");
        let other = format!("sha256:{}", "1".repeat(64));
        KnownServers::check_or_pin(Some(&path), "rkm.example:7443", &first).unwrap();
        KnownServers::check_or_pin(Some(&path), "rkm.example:7443", &first).unwrap();
        KnownServers::check_or_pin(Some(&path), "other.example:7443", &other).unwrap();
        let refused =
            KnownServers::check_or_pin(Some(&path), "rkm.example:7443", &other).unwrap_err();
        assert!(
            matches!(refused, ClientConfigError::PinMismatch { .. }),
            "{refused}"
        );
        assert!(refused.to_string().contains("impostor"), "{refused}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().lines().count(),
            2,
            "a refused certificate is not pinned"
        );
    }

    #[test]
    fn a_damaged_pin_is_refused_naming_its_line_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_servers");
        let good = format!("sha256:{HEX}");
        for damaged in [
            "rkm.example:7443 sha256:00112233".to_owned(),
            "rkm.example:7443".to_owned(),
            format!("rkm.example:7443 {}", "z".repeat(64)),
        ] {
            std::fs::write(
                &path,
                format!("# pins\n\nother.example:7443 {good}\n{damaged}\n"),
            )
            .unwrap();
            let refused =
                KnownServers::check_or_pin(Some(&path), "rkm.example:7443", &good).unwrap_err();
            assert!(
                matches!(refused, ClientConfigError::MalformedPin { line: 4, .. }),
                "{damaged}: {refused}"
            );
            assert!(
                refused.to_string().contains("fix or delete it"),
                "{refused}"
            );
            assert_eq!(
                std::fs::read_to_string(&path).unwrap().lines().count(),
                4,
                "{damaged}: nothing was pinned over the damaged line"
            );
        }
    }

    #[test]
    fn relative_paths_in_client_toml_are_relative_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.toml");
        std::fs::write(
            &path,
            "endpoint = \"https://rkm.example:7443\"\nca = \"ca.pem\"\ncert_key = \"/abs/key.pem\"\n",
        )
        .unwrap();
        let file = ClientFile::load(Some(&path)).unwrap();
        assert_eq!(file.ca, Some(dir.path().join("ca.pem")));
        assert_eq!(file.cert_key, Some(PathBuf::from("/abs/key.pem")));
        std::fs::write(&path, "endpiont = \"x\"\n").unwrap();
        let malformed = ClientFile::load(Some(&path)).unwrap_err();
        assert!(malformed.to_string().contains("endpiont"), "{malformed}");
    }
}
