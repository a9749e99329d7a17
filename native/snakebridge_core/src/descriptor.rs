//! The descriptor cache: what introspection learned about a Python library, kept so that
//! compiling never needs Python.
//!
//! Hot: an LRU in memory keyed by `{integration, descriptor hash}`. Persistent: one JSON
//! file per integration (`<dir>/<integration>.json`), written atomically (temporary file,
//! then rename), with a versioned envelope and a stable key order so that it diffs well in
//! git. The envelope's `cache_key` covers the config, the library version and the Python
//! version: a file whose key differs from the one expected is stale and is re-introspected.
//! A corrupt file is an error naming the file and the field, never a crash.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use prost::Message;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::proto::{DescribeLibraryRequest, DescribeLibraryResponse};

/// Version of the file format; files of another version are re-introspected.
pub const SCHEMA_VERSION: u32 = 1;

/// How many descriptors the hot cache keeps.
const HOT_CAPACITY: usize = 64;

/// One cached descriptor with what identifies it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The version of the file format (see [`SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// The integration (usually the Python module) the descriptor belongs to.
    pub integration: String,
    /// Hash of the config alone: what can be checked without Python (at compile time).
    pub config_hash: String,
    /// The request that made the descriptor (see [`request_key`]); empty in files written
    /// before it was recorded.
    #[serde(default)]
    pub request_key: String,
    /// Hash of the config, the library version and the Python version (see [`cache_key`]).
    pub cache_key: String,
    /// The version of the introspected library.
    pub library_version: String,
    /// The `sys.version` of the Python that introspected it.
    pub python_version: String,
    /// Hash of the descriptor itself (see [`descriptor_hash`]).
    pub descriptor_hash: String,
    /// What introspection learned.
    pub descriptor: DescribeLibraryResponse,
}

/// Why a cache file could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    /// The file is not valid JSON for the format, or fails validation.
    #[error("{file}: {field}: {message}")]
    Corrupt {
        /// The cache file.
        file: PathBuf,
        /// Where in the file, e.g. `descriptor_hash`.
        field: String,
        /// What is wrong there.
        message: String,
    },
    /// The file could not be read or written.
    #[error("{file}: {message}")]
    Io {
        /// The cache file.
        file: PathBuf,
        /// What went wrong.
        message: String,
    },
}

use crate::hex::encode as hex;

/// The key a descriptor is valid for: config, library version and Python version.
pub fn cache_key(config: &[u8], library_version: &str, python_version: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [
        config,
        library_version.as_bytes(),
        python_version.as_bytes(),
    ] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hex(&hasher.finalize())
}

/// The hex SHA-256 of a config's bytes.
pub fn config_hash(config: &[u8]) -> String {
    hex(&Sha256::digest(config))
}

/// What a describe's answer depends on besides the library and Python versions: the
/// config, the module, submodules, depth and exclusions, so that two requests for one
/// module with different depths never share an answer.
pub fn request_key(config: &[u8], request: &DescribeLibraryRequest) -> String {
    let mut hasher = Sha256::new();
    let depth = request.depth.to_be_bytes();
    let parts = [config, request.module_path.as_bytes(), &depth]
        .into_iter()
        .chain(request.submodules.iter().map(|s| s.as_bytes()))
        .chain([b"|".as_slice()])
        .chain(request.exclude_patterns.iter().map(|s| s.as_bytes()));
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hex(&hasher.finalize())
}

/// A hash of the descriptor's content (deterministic: maps are ordered), ignoring the
/// hash field itself.
pub fn descriptor_hash(descriptor: &DescribeLibraryResponse) -> String {
    hex(&descriptor_digest(descriptor))
}

/// The SHA-256 behind [`descriptor_hash`], as bytes (what the worker puts in
/// `DescribeLibraryResponse.descriptor_hash`). Deterministic: the generated maps are
/// `BTreeMap`s.
pub fn descriptor_digest(descriptor: &DescribeLibraryResponse) -> Vec<u8> {
    if descriptor.descriptor_hash.is_empty() {
        return Sha256::digest(descriptor.encode_to_vec()).to_vec();
    }
    let mut unhashed = descriptor.clone();
    unhashed.descriptor_hash.clear();
    Sha256::digest(unhashed.encode_to_vec()).to_vec()
}

/// Checks what the JSON schema cannot: names consistent with their keys, hashes right.
fn validate(entry: &Entry) -> Result<(), (String, String)> {
    if entry.schema_version != SCHEMA_VERSION {
        return Err((
            "schema_version".into(),
            format!(
                "is {}, this SnakeBridge reads {SCHEMA_VERSION}",
                entry.schema_version
            ),
        ));
    }
    if entry.integration.is_empty() {
        return Err(("integration".into(), "is empty".into()));
    }
    for (path, class) in &entry.descriptor.classes {
        if class.python_path != *path {
            return Err((
                format!("descriptor.classes[{path:?}].python_path"),
                format!("is {:?}, its key says {path:?}", class.python_path),
            ));
        }
    }
    for (path, function) in &entry.descriptor.functions {
        if function.python_path != *path {
            return Err((
                format!("descriptor.functions[{path:?}].python_path"),
                format!("is {:?}, its key says {path:?}", function.python_path),
            ));
        }
    }
    let actual = descriptor_hash(&entry.descriptor);
    if actual != entry.descriptor_hash {
        return Err((
            "descriptor_hash".into(),
            format!("does not match the descriptor (its content hashes to {actual})"),
        ));
    }
    Ok(())
}

/// Parses and validates a cache file's content.
pub fn parse(file: &Path, json: &[u8]) -> Result<Entry, CacheError> {
    let corrupt = |field: String, message: String| CacheError::Corrupt {
        file: file.to_path_buf(),
        field,
        message,
    };
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let entry: Entry = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|e| corrupt(e.path().to_string(), e.inner().to_string()))?;
    validate(&entry).map_err(|(field, message)| corrupt(field, message))?;
    Ok(entry)
}

/// Which version of a file: what changes when it is rewritten (every store is a rename,
/// so a new inode) or edited in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    inode: u64,
    len: u64,
    modified: Option<std::time::SystemTime>,
}

impl Stamp {
    fn of(file: &Path) -> Option<Stamp> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(file).ok()?;
        Some(Stamp {
            inode: meta.ino(),
            len: meta.len(),
            modified: meta.modified().ok(),
        })
    }
}

/// Hot entries by (integration, descriptor hash), with the version of their file.
type Hot = lru::LruCache<(String, String), (Arc<Entry>, Option<Stamp>)>;

/// Both levels of the cache for one directory.
#[derive(Debug)]
pub struct DescriptorCache {
    dir: PathBuf,
    /// Entries and the version of the file each came from: one whose file changed since
    /// (replaced, edited, removed) is read again.
    hot: Mutex<Hot>,
}

/// The caches in use, one per directory, so that every caller shares its hot level.
static SHARED: std::sync::LazyLock<
    Mutex<std::collections::HashMap<PathBuf, Arc<DescriptorCache>>>,
> = std::sync::LazyLock::new(Default::default);

impl DescriptorCache {
    /// The process's cache for `dir`: the same one for every caller.
    pub fn shared(dir: impl Into<PathBuf>) -> Arc<DescriptorCache> {
        let dir = dir.into();
        let mut caches = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            caches
                .entry(dir.clone())
                .or_insert_with(|| Arc::new(DescriptorCache::new(dir))),
        )
    }

    /// A cache keeping its files in `dir` (created on the first store).
    pub fn new(dir: impl Into<PathBuf>) -> DescriptorCache {
        DescriptorCache {
            dir: dir.into(),
            hot: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(HOT_CAPACITY).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }

    /// The file holding `integration`'s descriptor.
    pub fn file(&self, integration: &str) -> PathBuf {
        self.dir.join(format!("{integration}.json"))
    }

    /// The cached descriptor of `integration`, if any. With `expected_key`, only one made
    /// for that key counts (anything else is stale: `Ok(None)`). A corrupt file is an
    /// error naming file and field.
    pub fn load(
        &self,
        integration: &str,
        expected_key: Option<&str>,
    ) -> Result<Option<Arc<Entry>>, CacheError> {
        let file = self.file(integration);
        if let Ok(mut hot) = self.hot.lock() {
            let found = hot
                .iter()
                .find(|((name, _), (entry, _))| {
                    name == integration && expected_key.is_none_or(|k| entry.cache_key == k)
                })
                .map(|(key, (_, stamp))| (key.clone(), *stamp));
            if let Some((key, stamp)) = found {
                if stamp.is_some() && stamp == Stamp::of(&file) {
                    return Ok(hot.get(&key).map(|(entry, _)| Arc::clone(entry)));
                }
                hot.pop(&key);
            }
        }
        let json = match std::fs::read(&file) {
            Ok(json) => json,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(CacheError::Io {
                    file,
                    message: e.to_string(),
                })
            }
        };
        let stamp = Stamp::of(&file);
        let entry = Arc::new(parse(&file, &json)?);
        if expected_key.is_some_and(|k| entry.cache_key != k) {
            return Ok(None);
        }
        self.remember(&entry, stamp);
        Ok(Some(entry))
    }

    /// Writes `entry` atomically to its file and keeps it hot; returns the file.
    pub fn store(&self, entry: Entry) -> Result<PathBuf, CacheError> {
        let file = self.file(&entry.integration);
        let io = |message: String| CacheError::Io {
            file: file.clone(),
            message,
        };
        let mut json = serde_json::to_vec_pretty(&entry).map_err(|e| io(e.to_string()))?;
        json.push(b'\n');
        std::fs::create_dir_all(&self.dir).map_err(|e| io(e.to_string()))?;
        let temporary = self
            .dir
            .join(format!(".{}.{}.tmp", entry.integration, std::process::id()));
        std::fs::write(&temporary, &json).map_err(|e| io(e.to_string()))?;
        std::fs::rename(&temporary, &file).map_err(|e| {
            let _ = std::fs::remove_file(&temporary);
            io(e.to_string())
        })?;
        self.remember(&Arc::new(entry), Stamp::of(&file));
        Ok(file)
    }

    /// Forgets `integration` in both levels; returns whether a file was removed.
    pub fn invalidate(&self, integration: &str) -> Result<bool, CacheError> {
        if let Ok(mut hot) = self.hot.lock() {
            let keys: Vec<_> = hot
                .iter()
                .filter(|((name, _), _)| name == integration)
                .map(|(key, _)| key.clone())
                .collect();
            for key in keys {
                hot.pop(&key);
            }
        }
        let file = self.file(integration);
        match std::fs::remove_file(&file) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(CacheError::Io {
                file,
                message: e.to_string(),
            }),
        }
    }

    fn remember(&self, entry: &Arc<Entry>, stamp: Option<Stamp>) {
        if let Ok(mut hot) = self.hot.lock() {
            hot.put(
                (entry.integration.clone(), entry.descriptor_hash.clone()),
                (Arc::clone(entry), stamp),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{FunctionDescriptor, ParameterDescriptor};

    fn entry() -> Entry {
        let mut descriptor = DescribeLibraryResponse {
            version: "2.0".into(),
            ..Default::default()
        };
        descriptor.functions.insert(
            "json.dumps".into(),
            FunctionDescriptor {
                name: "dumps".into(),
                python_path: "json.dumps".into(),
                parameters: vec![ParameterDescriptor {
                    name: "obj".into(),
                    required: true,
                    ..Default::default()
                }],
                ..Default::default()
            },
        );
        let hash = descriptor_hash(&descriptor);
        Entry {
            schema_version: SCHEMA_VERSION,
            integration: "json".into(),
            config_hash: config_hash(b"config"),
            request_key: String::new(),
            cache_key: cache_key(b"config", "2.0", "3.11"),
            library_version: "2.0".into(),
            python_version: "3.11".into(),
            descriptor_hash: hash,
            descriptor,
        }
    }

    fn scratch() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "sb-descriptors-{}-{}",
            std::process::id(),
            &crate::auth::new_token()[..8]
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn request_keys_differ_with_what_the_answer_depends_on() {
        let request = DescribeLibraryRequest {
            module_path: "json".into(),
            ..Default::default()
        };
        let deeper = DescribeLibraryRequest {
            depth: 1,
            ..request.clone()
        };
        let with_sub = DescribeLibraryRequest {
            submodules: vec!["decoder".into()],
            ..request.clone()
        };
        let key = request_key(b"c", &request);
        assert_eq!(key, request_key(b"c", &request));
        assert_ne!(key, request_key(b"c", &deeper));
        assert_ne!(key, request_key(b"c", &with_sub));
        assert_ne!(key, request_key(b"d", &request));
    }

    #[test]
    fn a_stored_descriptor_loads_back_from_disk_and_from_memory() {
        let dir = scratch();
        let cache = DescriptorCache::new(&dir);
        let stored = entry();
        let file = cache.store(stored.clone()).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains("\"json.dumps\""));

        let fresh = DescriptorCache::new(&dir);
        let loaded = fresh
            .load("json", Some(&stored.cache_key))
            .unwrap()
            .unwrap();
        assert_eq!(*loaded, stored);
        assert!(
            fresh.load("json", Some("other key")).unwrap().is_none(),
            "stale"
        );
        assert!(fresh.load("math", None).unwrap().is_none());

        assert!(fresh.invalidate("json").unwrap());
        assert!(fresh.load("json", None).unwrap().is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_file_changed_behind_the_hot_cache_is_read_again() {
        let dir = scratch();
        let cache = DescriptorCache::new(&dir);
        let file = cache.store(entry()).unwrap();
        assert!(cache.load("json", None).unwrap().is_some());

        // Replaced by another descriptor (a checkout, another node's store).
        let mut other = entry();
        other.library_version = "3.1".into();
        let writer = DescriptorCache::new(&dir);
        writer.store(other).unwrap();
        assert_eq!(
            cache.load("json", None).unwrap().unwrap().library_version,
            "3.1"
        );

        // Corrupted in place: an error naming the file, not the old entry.
        std::fs::write(&file, b"{ not json").unwrap();
        let err = cache.load("json", None).unwrap_err().to_string();
        assert!(err.contains("json.json"), "{err}");

        // Removed: gone.
        std::fs::remove_file(&file).unwrap();
        assert!(cache.load("json", None).unwrap().is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_same_descriptor_always_writes_the_same_bytes() {
        let dir = scratch();
        let cache = DescriptorCache::new(&dir);
        let first = std::fs::read(cache.store(entry()).unwrap()).unwrap();
        let second = std::fs::read(cache.store(entry()).unwrap()).unwrap();
        assert_eq!(first, second);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn corrupt_files_name_the_file_and_the_field() {
        let path = Path::new("priv/snakebridge/schemas/json.json");
        let err = parse(path, b"{\"schema_version\": \"one\"}").unwrap_err();
        assert!(
            err.to_string().contains("json.json: schema_version"),
            "{err}"
        );

        let mut tampered = entry();
        tampered.descriptor.version = "3.0".into();
        let json = serde_json::to_vec(&tampered).unwrap();
        let err = parse(path, &json).unwrap_err();
        assert!(err.to_string().contains("descriptor_hash"), "{err}");

        let mut renamed = entry();
        if let Some(f) = renamed.descriptor.functions.get_mut("json.dumps") {
            f.python_path = "json.loads".into();
        }
        renamed.descriptor_hash = descriptor_hash(&renamed.descriptor);
        let err = parse(path, &serde_json::to_vec(&renamed).unwrap()).unwrap_err();
        assert!(
            err.to_string()
                .contains("descriptor.functions[\"json.dumps\"].python_path"),
            "{err}"
        );

        let err = parse(path, b"not json").unwrap_err();
        assert!(matches!(err, CacheError::Corrupt { .. }));
    }
}
