//! `deploy/kubernetes/` as a cluster's admission would see it (rendered, validated, checked by
//! `scripts/check-kubernetes`, which `scripts/test` runs on the real manifests), and its
//! ConfigMap against the README.

use std::{collections::BTreeSet, path::Path, process::Command};

use serde::Deserialize as _;

use crate::harness::scratch_dir;

/// Every `UPPER_CASE` name in backticks in the first column of the README's variable tables.
fn variables_the_readme_documents() -> BTreeSet<String> {
    include_str!("../../README.md")
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split(" |").next())
        .flat_map(|cell| {
            cell.split('`')
                .step_by(2)
                .map(str::trim)
                .collect::<Vec<_>>()
        })
        .map(|name| name.trim_matches(|c: char| c == ',' || c.is_whitespace()))
        .filter(|name| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .map(str::to_owned)
        .collect()
}

/// The keys of every `data`/`stringData` map in `file`'s documents.
fn keys_in(file: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file))
        .expect("the manifest is in the repository");
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde_yaml::Value::deserialize(doc).expect("each document is YAML"))
        .flat_map(|doc| {
            ["data", "stringData"]
                .into_iter()
                .filter_map(|field| doc.get(field).and_then(serde_yaml::Value::as_mapping))
                .flat_map(|map| map.keys().filter_map(serde_yaml::Value::as_str))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_configmap_the_secret_example_and_the_worker_overlay_name_exactly_the_readmes_variables() {
    // Arrange
    let documented = variables_the_readme_documents();
    let configured: BTreeSet<String> = [
        "deploy/kubernetes/base/configmap.yaml",
        "deploy/kubernetes/base/secret.example.yaml",
        "deploy/kubernetes/overlays/with-worker/worker.yaml",
    ]
    .into_iter()
    .flat_map(keys_in)
    .collect();

    // Assert
    assert!(
        documented.len() > 40,
        "the README's tables were read: {documented:?}"
    );
    let undocumented: Vec<_> = configured.difference(&documented).collect();
    let missing: Vec<_> = documented.difference(&configured).collect();
    assert!(
        undocumented.is_empty() && missing.is_empty(),
        "set in the manifests but not in the README: {undocumented:?}; in the README but not in \
         the manifests: {missing:?}"
    );
}

/// Runs `scripts/check-kubernetes` on `dir`: its exit status and what it printed.
fn check(dir: &Path) -> (bool, String) {
    let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/check-kubernetes"))
        .arg(dir)
        .output()
        .expect("scripts/check-kubernetes runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A copy of `deploy/kubernetes` with `find` replaced by `replace` in `file`.
fn broken_copy(file: &str, find: &str, replace: &str) -> std::path::PathBuf {
    let dir = scratch_dir("temporal-bff-k8s-");
    let copied = Command::new("cp")
        .arg("-r")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/."))
        .arg(&dir)
        .status()
        .expect("cp runs");
    assert!(copied.success(), "the manifests are copied");
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).expect("the file to break is there");
    assert!(text.contains(find), "{file} holds {find:?}");
    std::fs::write(&path, text.replacen(find, replace, 1)).expect("the broken file is written");
    dir
}

#[test]
fn a_misspelled_field_a_writable_root_filesystem_or_a_broken_overlay_fails_the_manifest_check() {
    for (file, find, replace, named) in [
        // An unknown field: a cluster would refuse the object.
        (
            "base/deployment.yaml",
            "  replicas: 2",
            "  replica: 2",
            "'replica' was unexpected",
        ),
        // Valid, but unsafe: checkov's check fails.
        (
            "base/deployment.yaml",
            "readOnlyRootFilesystem: true",
            "readOnlyRootFilesystem: false",
            "CKV_K8S_22",
        ),
        // A resource that does not exist: the overlay cannot be built.
        (
            "base/kustomization.yaml",
            "  - pdb.yaml",
            "  - pdb-missing.yaml",
            "kustomize cannot build overlay",
        ),
    ] {
        // Arrange
        let dir = broken_copy(file, find, replace);

        // Act
        let (passed, said) = check(&dir);

        // Assert
        assert!(!passed, "{file} with {replace:?} passed the check: {said}");
        assert!(said.contains(named), "the check names {named:?}: {said}");
    }
}
