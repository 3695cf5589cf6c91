//! The OCI image that `scripts/image.sh` builds (target/image/): its config, and
//! that its one layer holds exactly the static binary the script left at
//! target/image/mizzen, which runs.
//!
//! With CI=true the image must exist (scripts/test.sh builds it first); otherwise
//! these tests print a note and pass when it has not been built.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const LABELS: [&str; 6] = [
    "org.opencontainers.image.title",
    "org.opencontainers.image.description",
    "org.opencontainers.image.source",
    "org.opencontainers.image.version",
    "org.opencontainers.image.revision",
    "org.opencontainers.image.licenses",
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// target/image, or None (after a note) when it is absent outside CI.
fn image_dir() -> Option<PathBuf> {
    let dir = workspace_root().join("target/image");
    if dir.join("oci/index.json").is_file() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "{}/oci is missing: with CI=true the image must be built before the tests; \
             run ./scripts/image.sh (scripts/test.sh does)",
            dir.display()
        );
    }
    eprintln!(
        "note: skipping the image test: {}/oci not found; run ./scripts/image.sh to build it",
        dir.display()
    );
    None
}

fn sha256_file(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("run sha256sum");
    assert!(out.status.success(), "sha256sum {}", path.display());
    let text = String::from_utf8(out.stdout).expect("sha256sum output");
    text.split_whitespace()
        .next()
        .expect("sha256sum digest")
        .to_string()
}

struct Image {
    oci: PathBuf,
    manifest: Value,
    config: Value,
}

impl Image {
    fn load(dir: &Path) -> Image {
        let oci = dir.join("oci");
        let layout = read_json(&oci.join("oci-layout"));
        assert_eq!(layout["imageLayoutVersion"], "1.0.0", "oci-layout");

        let index = read_json(&oci.join("index.json"));
        assert_eq!(index["schemaVersion"], 2, "index.json: {index}");
        let manifests = index["manifests"].as_array().expect("index.json manifests");
        assert_eq!(manifests.len(), 1, "one image in the layout: {index}");
        let desc = &manifests[0];
        assert_eq!(desc["mediaType"], OCI_MANIFEST, "index.json: {index}");
        assert_eq!(
            desc["annotations"]["org.opencontainers.image.ref.name"],
            env!("CARGO_PKG_VERSION"),
            "the layout names the tag: {index}"
        );

        let manifest_path = blob_path(&oci, desc);
        let manifest = read_json(&manifest_path);
        assert_eq!(manifest["schemaVersion"], 2, "manifest: {manifest}");
        assert_eq!(manifest["mediaType"], OCI_MANIFEST, "manifest: {manifest}");
        assert_eq!(
            manifest["config"]["mediaType"], OCI_CONFIG,
            "manifest: {manifest}"
        );
        let config = read_json(&blob_path(&oci, &manifest["config"]));
        Image {
            oci,
            manifest,
            config,
        }
    }
}

fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// The blob a descriptor points to, checked against the descriptor's digest and size.
fn blob_path(oci: &Path, desc: &Value) -> PathBuf {
    let digest = desc["digest"].as_str().expect("descriptor digest");
    let hex = digest
        .strip_prefix("sha256:")
        .unwrap_or_else(|| panic!("not a sha256 digest: {digest}"));
    let path = oci.join("blobs/sha256").join(hex);
    let len = fs::metadata(&path)
        .unwrap_or_else(|e| panic!("blob {digest}: {e}"))
        .len();
    assert_eq!(Some(len), desc["size"].as_u64(), "size of blob {digest}");
    assert_eq!(sha256_file(&path), hex, "content of blob {digest}");
    path
}

#[test]
fn image_config() {
    let Some(dir) = image_dir() else { return };
    let image = Image::load(&dir);
    let config = &image.config;

    assert_eq!(config["architecture"], "amd64", "config: {config}");
    assert_eq!(config["os"], "linux", "config: {config}");
    let c = &config["config"];
    assert_eq!(
        c["Entrypoint"],
        serde_json::json!(["/mizzen"]),
        "config: {config}"
    );
    assert_eq!(c["Cmd"], serde_json::json!(["run"]), "config: {config}");
    assert_eq!(c["WorkingDir"], "/", "config: {config}");

    // Non-root, and numeric: there is no /etc/passwd to resolve a name with.
    let user = c["User"].as_str().expect("config.User");
    let (uid, gid) = user.split_once(':').unwrap_or((user, ""));
    let uid: u32 = uid
        .parse()
        .unwrap_or_else(|_| panic!("user {user:?} is not numeric"));
    assert_eq!(uid, 65532, "user {user:?}");
    assert_eq!(gid, "65532", "group of user {user:?}");

    let labels = c["Labels"].as_object().expect("config.Labels");
    for label in LABELS {
        let value = labels.get(label).and_then(Value::as_str).unwrap_or("");
        assert!(
            !value.is_empty(),
            "label {label} missing or empty: {labels:?}"
        );
    }
    assert_eq!(labels["org.opencontainers.image.title"], "mizzen");
    assert_eq!(
        labels["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(
        labels["org.opencontainers.image.licenses"],
        env!("CARGO_PKG_LICENSE")
    );
    let revision = labels["org.opencontainers.image.revision"]
        .as_str()
        .unwrap_or("");
    assert!(
        revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit()),
        "revision {revision:?} is not a git commit"
    );

    assert_eq!(config["rootfs"]["type"], "layers", "config: {config}");
    let layers = image.manifest["layers"].as_array().expect("layers");
    let diff_ids = config["rootfs"]["diff_ids"].as_array().expect("diff_ids");
    assert_eq!(layers.len(), 1, "one layer: {}", image.manifest);
    assert_eq!(diff_ids.len(), 1, "one diff_id: {config}");
}

#[test]
fn image_layer_is_the_static_binary() {
    let Some(dir) = image_dir() else { return };
    let image = Image::load(&dir);
    let layers = image.manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "one layer: {}", image.manifest);
    let layer = &layers[0];
    let blob = blob_path(&image.oci, layer);
    let tmp = tempfile::tempdir().expect("tempdir");

    // The uncompressed layer, which the config's diff_id names.
    let tar = tmp.path().join("layer.tar");
    match layer["mediaType"].as_str() {
        Some(OCI_LAYER_GZIP) => {
            let out = fs::File::create(&tar).expect("create layer.tar");
            let status = Command::new("gzip")
                .arg("-dc")
                .arg(&blob)
                .stdout(Stdio::from(out))
                .status()
                .expect("run gzip");
            assert!(status.success(), "gzip -dc {}", blob.display());
        }
        Some(OCI_LAYER_TAR) => {
            fs::copy(&blob, &tar).expect("copy layer");
        }
        other => panic!("unexpected layer media type {other:?}"),
    }
    assert_eq!(
        format!("sha256:{}", sha256_file(&tar)),
        image.config["rootfs"]["diff_ids"][0],
        "the layer's diff_id"
    );

    // Exactly one file, /mizzen, mode 0755, owned by 65532:65532.
    let list = Command::new("tar")
        .args(["--numeric-owner", "-tvf"])
        .arg(&tar)
        .output()
        .expect("run tar -t");
    assert!(list.status.success(), "tar -tvf {}", tar.display());
    let list = String::from_utf8(list.stdout).expect("tar listing");
    let entries: Vec<Vec<&str>> = list
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(entries.len(), 1, "one file in the layer:\n{list}");
    let entry = &entries[0];
    assert_eq!(
        entry.first(),
        Some(&"-rwxr-xr-x"),
        "mode of /mizzen:\n{list}"
    );
    assert_eq!(
        entry.get(1),
        Some(&"65532/65532"),
        "owner of /mizzen:\n{list}"
    );
    let name = entry.last().copied().unwrap_or("");
    assert_eq!(
        name.trim_start_matches("./").trim_start_matches('/'),
        "mizzen",
        "{list}"
    );

    let root = tmp.path().join("rootfs");
    fs::create_dir(&root).expect("mkdir rootfs");
    let status = Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(&root)
        .status()
        .expect("run tar -x");
    assert!(status.success(), "tar -xf {}", tar.display());
    let extracted = root.join("mizzen");

    // The very file scripts/image.sh left for the end-to-end tests.
    let copy = dir.join("mizzen");
    assert_eq!(
        sha256_file(&extracted),
        sha256_file(&copy),
        "/mizzen in the image differs from {}; run ./scripts/image.sh",
        copy.display()
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        // In CI the image was built from this tree's static release binary.
        let target = workspace_root().join(
            std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| "target".into()),
        );
        let built = target.join("x86_64-unknown-linux-gnu/release/mizzen");
        assert_eq!(
            sha256_file(&extracted),
            sha256_file(&built),
            "/mizzen in the image differs from {}",
            built.display()
        );
    }

    let out = Command::new(&extracted)
        .arg("--version")
        .output()
        .expect("run /mizzen --version");
    assert!(
        out.status.success(),
        "/mizzen --version: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(env!("CARGO_PKG_VERSION")),
        "/mizzen --version printed {stdout:?}"
    );
}
