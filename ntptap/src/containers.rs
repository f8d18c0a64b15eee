//! What a container's runtime calls it, from the runtime's own store on disk: podman and
//! CRI-O keep their containers in containers/storage (`overlay-containers/containers.json`:
//! each id with its names), Docker in `containers/ID/config.v2.json` (`Name`, and the labels
//! kubelet sets). Kubernetes' pod and namespace come from the name kubelet gives a container
//! (`k8s_CONTAINER_POD_NAMESPACE_UID_ATTEMPT`) or those labels. Read once per new container
//! (the caller caches), never on the packet path; a runtime that is absent costs a failed
//! `stat` and says nothing. containerd keeps its names in a database behind its CRI socket,
//! which ntptap does not speak: its containers keep their ids.

use std::path::Path;

use serde::Deserialize;

/// A container's names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerNames {
    /// The runtime's name for it (`ntp-probe`).
    pub name: String,
    /// Kubernetes: its pod and the pod's namespace.
    pub pod: Option<(String, String)>,
}

/// The most bytes of a runtime's store file read: a store larger than this is not read.
const MOST: u64 = 64 << 20;

/// The names of container `id` (64 hex digits) of `runtime` (as [`crate::process`] names
/// runtimes), from the stores under `root` (`/` on a host).
#[must_use]
pub fn names_in(root: &Path, runtime: &str, id: &str) -> Option<ContainerNames> {
    match runtime {
        "podman" | "cri-o" => storage(
            &root.join("var/lib/containers/storage/overlay-containers/containers.json"),
            id,
        ),
        "docker" => docker(
            &root
                .join("var/lib/docker/containers")
                .join(id)
                .join("config.v2.json"),
        ),
        _ => None,
    }
}

/// [`names_in`] on this host.
#[must_use]
pub fn names(runtime: &str, id: &str) -> Option<ContainerNames> {
    names_in(Path::new("/"), runtime, id)
}

fn read(path: &Path) -> Option<Vec<u8>> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.len() > MOST {
        return None;
    }
    std::fs::read(path).ok()
}

#[derive(Deserialize)]
struct StorageEntry {
    id: String,
    #[serde(default)]
    names: Vec<String>,
}

fn storage(path: &Path, id: &str) -> Option<ContainerNames> {
    let entries: Vec<StorageEntry> = serde_json::from_slice(&read(path)?).ok()?;
    let entry = entries.into_iter().find(|e| e.id == id)?;
    let name = entry.names.into_iter().next()?;
    Some(from_name(name))
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "Config", default)]
    config: DockerInner,
}

#[derive(Deserialize, Default)]
struct DockerInner {
    #[serde(rename = "Labels", default)]
    labels: std::collections::HashMap<String, String>,
}

fn docker(path: &Path) -> Option<ContainerNames> {
    let config: DockerConfig = serde_json::from_slice(&read(path)?).ok()?;
    let mut names = from_name(config.name.trim_start_matches('/').to_owned());
    let label = |k: &str| config.config.labels.get(k).cloned();
    if let (Some(pod), Some(namespace)) = (
        label("io.kubernetes.pod.name"),
        label("io.kubernetes.pod.namespace"),
    ) {
        names.pod = Some((pod, namespace));
        if let Some(container) = label("io.kubernetes.container.name") {
            names.name = container;
        }
    }
    (!names.name.is_empty()).then_some(names)
}

/// A runtime's name, and for kubelet's `k8s_CONTAINER_POD_NAMESPACE_UID_ATTEMPT` the
/// container's own name with its pod and namespace.
fn from_name(name: String) -> ContainerNames {
    let parts: Vec<&str> = name.split('_').collect();
    if parts.len() == 6 && parts[0] == "k8s" {
        return ContainerNames {
            name: parts[1].to_owned(),
            pod: Some((parts[2].to_owned(), parts[3].to_owned())),
        };
    }
    ContainerNames { name, pod: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "1e21be5f30fdd542e403d461c2a2260bcfb00aa8d0016d3d509d44bc86585211";

    #[test]
    fn podman_and_cri_o_names_come_from_containers_storage() {
        let root = tempfile::tempdir().unwrap();
        let dir = root
            .path()
            .join("var/lib/containers/storage/overlay-containers");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("containers.json"),
            format!(
                r#"[{{"id":"{}","names":["other"]}},{{"id":"{ID}","names":["ntp-probe"],"image":"x"}},
                   {{"id":"{}","names":["k8s_chrony_ntp-0_time_8d1c_1"]}}]"#,
                "a".repeat(64),
                "b".repeat(64)
            ),
        )
        .unwrap();
        let named = |rt: &str, id: &str| names_in(root.path(), rt, id);
        assert_eq!(named("podman", ID).unwrap().name, "ntp-probe");
        let k8s = named("cri-o", &"b".repeat(64)).unwrap();
        assert_eq!(
            (k8s.name.as_str(), k8s.pod),
            ("chrony", Some(("ntp-0".to_owned(), "time".to_owned())))
        );
        assert_eq!(named("podman", &"c".repeat(64)), None, "not in the store");
        assert_eq!(named("containerd", ID), None, "no store ntptap reads");
    }

    #[test]
    fn docker_names_and_kubelet_labels() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("var/lib/docker/containers").join(ID);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("config.v2.json"),
            br#"{"Name":"/ntp-probe","Config":{}}"#,
        )
        .unwrap();
        assert_eq!(
            names_in(root.path(), "docker", ID).unwrap().name,
            "ntp-probe"
        );
        std::fs::write(
            dir.join("config.v2.json"),
            br#"{"Name":"/k8s_x","Config":{"Labels":{"io.kubernetes.pod.name":"p","io.kubernetes.pod.namespace":"n","io.kubernetes.container.name":"c"}}}"#,
        )
        .unwrap();
        let n = names_in(root.path(), "docker", ID).unwrap();
        assert_eq!(
            (n.name.as_str(), n.pod),
            ("c", Some(("p".into(), "n".into())))
        );
        std::fs::write(dir.join("config.v2.json"), b"not json").unwrap();
        assert_eq!(names_in(root.path(), "docker", ID), None);
    }
}
