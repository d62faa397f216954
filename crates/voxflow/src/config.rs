//! The configuration file (`--config FILE`, TOML): what is easier to keep in a file than to
//! create over the API. Today: SIP trunks, upserted by name into the first account at start.
//!
//! ```toml
//! [[trunks]]
//! name = "carrier"
//! host = "sip.carrier.example"   # host name or IP
//! port = 5060                    # optional
//! transport = "udp"              # udp (default) or tcp
//! username = "acct42"            # digest credentials, optional
//! password = "secret"
//! register = true                # keep an outbound registration
//! register_expires = 600
//! caller_id = "+15557770000"     # From user for calls through it, optional
//! allowed_ips = ["192.0.2.0/24"] # sources allowed to send us calls from it
//! ```

use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;
use store::Store;
use uuid::Uuid;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigFile {
    #[serde(default)]
    trunks: Vec<TrunkConfig>,
}

/// One `[[trunks]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrunkConfig {
    name: String,
    host: String,
    port: Option<u16>,
    #[serde(default = "udp")]
    transport: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    register: bool,
    #[serde(default = "default_expires")]
    register_expires: u32,
    #[serde(default)]
    caller_id: String,
    #[serde(default)]
    allowed_ips: Vec<String>,
}

fn udp() -> String {
    "udp".to_owned()
}

fn default_expires() -> u32 {
    600
}

/// Read and check the file; errors name the file and the bad field.
pub(crate) fn load(path: &Path) -> anyhow::Result<ConfigFile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file: ConfigFile =
        toml::from_str(&text).with_context(|| format!("in {}", path.display()))?;
    for (i, t) in file.trunks.iter().enumerate() {
        let at = format!("{}: trunks[{i}] ({:?})", path.display(), t.name);
        if t.name.trim().is_empty() || t.host.trim().is_empty() {
            bail!("{at}: name and host are required");
        }
        if !matches!(t.transport.as_str(), "udp" | "tcp") {
            bail!("{at}: transport must be \"udp\" or \"tcp\"");
        }
        if t.register && t.username.is_empty() {
            bail!("{at}: register = true needs a username");
        }
        if !(60..=86_400).contains(&t.register_expires) {
            bail!("{at}: register_expires must be 60 to 86400 seconds");
        }
        if let Some(bad) = t
            .allowed_ips
            .iter()
            .find(|ip| runtime::parse_cidr(ip).is_none())
        {
            bail!("{at}: allowed_ips entry {bad:?} is not an IP address or CIDR block");
        }
    }
    Ok(file)
}

/// Create or update the file's trunks (matched by name) in `account`.
pub(crate) async fn apply(
    file: &ConfigFile,
    store: &dyn Store,
    account: Uuid,
) -> anyhow::Result<()> {
    let existing = store
        .list_trunks(
            account,
            &store::Page {
                size: 1000,
                after: None,
            },
        )
        .await?;
    for t in &file.trunks {
        let now = store::utc_now();
        let current = existing.iter().find(|e| e.name == t.name);
        let record = store::TrunkRecord {
            id: current.map_or_else(Uuid::new_v4, |c| c.id),
            account_id: account,
            name: t.name.clone(),
            host: t.host.clone(),
            port: t.port,
            transport: t.transport.clone(),
            username: t.username.clone(),
            password: t.password.clone(),
            register: t.register,
            register_expires: t.register_expires,
            caller_id: t.caller_id.clone(),
            allowed_ips: t.allowed_ips.clone(),
            tm_create: current.map_or_else(|| now.clone(), |c| c.tm_create.clone()),
            tm_update: now,
        };
        if current.is_some() {
            store.update_trunk(&record).await?;
        } else {
            store.create_trunk(&record).await?;
        }
        tracing::info!(trunk = %t.name, "trunk from the config file");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_file_errors_name_the_field() {
        let dir = std::env::temp_dir().join(format!("voxflow-cfg-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("voxflow.toml");
        let write = |text: &str| std::fs::write(&path, text).unwrap();
        write("[[trunks]]\nname = \"c\"\nhost = \"h\"\nallowed_ips = [\"10.0.0.0/33\"]\n");
        assert!(format!("{:#}", load(&path).unwrap_err()).contains("allowed_ips entry"));
        write("[[trunks]]\nname = \"c\"\nhost = \"h\"\ntransport = \"sctp\"\n");
        assert!(format!("{:#}", load(&path).unwrap_err()).contains("transport"));
        write("[[trunks]]\nname = \"c\"\nhost = \"h\"\ncolour = \"red\"\n");
        assert!(format!("{:#}", load(&path).unwrap_err()).contains("colour"));
        write("[[trunks]]\nname = \"c\"\nhost = \"h\"\nregister = true\nusername = \"u\"\n");
        let file = load(&path).unwrap();
        assert_eq!(file.trunks.len(), 1);
        assert_eq!(file.trunks[0].transport, "udp");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn config_file_trunks_are_upserted_by_name() {
        let store = store::SqliteStore::open("sqlite::memory:").await.unwrap();
        store.bootstrap(Some("t"), &store::utc_now()).await.unwrap();
        let account = store.first_account().await.unwrap().unwrap();
        let file: ConfigFile =
            toml::from_str("[[trunks]]\nname = \"carrier\"\nhost = \"a.example\"\n").unwrap();
        apply(&file, &store, account.id).await.unwrap();
        let first = store.all_trunks().await.unwrap();
        let changed: ConfigFile =
            toml::from_str("[[trunks]]\nname = \"carrier\"\nhost = \"b.example\"\n").unwrap();
        apply(&changed, &store, account.id).await.unwrap();
        let second = store.all_trunks().await.unwrap();
        assert_eq!(second.len(), 1);
        assert_eq!(
            (second[0].id, second[0].host.as_str()),
            (first[0].id, "b.example")
        );
    }
}
