//! A container's effective security context: its own `securityContext` over the pod's, as the
//! kubelet merges them (`determineEffectiveSecurityContext`), and the kubelet's `runAsNonRoot`
//! check against the image's user (`verifyRunAsNonRoot`), which looks at the image's `User`
//! string alone: a name cannot be checked without the image's files, so it is refused.

use k8s_openapi::api::core::v1::{Container, Pod};
use skiff_sandbox::{SeccompProfile, SecurityContext};

/// The merged context, or the kubelet's refusal (a `CreateContainerConfigError`).
pub(super) fn effective(
    pod: &Pod,
    container: &Container,
    image_user: Option<&str>,
    seccomp_dir: &std::path::Path,
) -> Result<SecurityContext, String> {
    let pod_sc = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default();
    let sc = container.security_context.clone().unwrap_or_default();
    let id = |v: Option<i64>| v.and_then(|v| u32::try_from(v).ok());
    let run_as_user = id(sc.run_as_user.or(pod_sc.run_as_user));
    let run_as_group = id(sc.run_as_group.or(pod_sc.run_as_group));
    let run_as_non_root = sc
        .run_as_non_root
        .or(pod_sc.run_as_non_root)
        .unwrap_or(false);
    if run_as_non_root {
        verify_non_root(run_as_user, image_user)?;
    }
    let mut supplemental_groups: Vec<u32> = pod_sc
        .supplemental_groups
        .iter()
        .flatten()
        .filter_map(|g| u32::try_from(*g).ok())
        .collect();
    supplemental_groups.extend(id(pod_sc.fs_group));
    let capabilities = sc.capabilities.unwrap_or_default();
    let seccomp = sc.seccomp_profile.or(pod_sc.seccomp_profile);
    let seccomp = match seccomp.as_ref().map(|p| p.type_.as_str()) {
        Some("RuntimeDefault") => SeccompProfile::RuntimeDefault,
        Some("Localhost") => {
            let relative = seccomp
                .as_ref()
                .and_then(|p| p.localhost_profile.clone())
                .unwrap_or_default();
            if relative.split('/').any(|part| part == "..") {
                return Err(format!(
                    "invalid seccomp profile path {relative:?}: it must stay below {}",
                    seccomp_dir.display()
                ));
            }
            SeccompProfile::Localhost(seccomp_dir.join(relative))
        }
        _ => SeccompProfile::Unconfined,
    };
    Ok(SecurityContext {
        run_as_user,
        run_as_group,
        supplemental_groups,
        privileged: sc.privileged.unwrap_or(false),
        capabilities_add: capabilities.add.unwrap_or_default(),
        capabilities_drop: capabilities.drop.unwrap_or_default(),
        read_only_root_filesystem: sc.read_only_root_filesystem.unwrap_or(false),
        no_new_privileges: sc.allow_privilege_escalation == Some(false),
        seccomp,
        unmasked_proc: sc.proc_mount.as_deref() == Some("Unmasked"),
    })
}

fn verify_non_root(run_as_user: Option<u32>, image_user: Option<&str>) -> Result<(), String> {
    if let Some(uid) = run_as_user {
        return if uid == 0 {
            Err("container's runAsUser breaks non-root policy".into())
        } else {
            Ok(())
        };
    }
    let user = image_user
        .and_then(|u| u.split(':').next())
        .filter(|u| !u.is_empty());
    match user {
        None => Err("container has runAsNonRoot and image will run as root".into()),
        Some(name) => match name.parse::<u32>() {
            Ok(0) => Err("container has runAsNonRoot and image will run as root".into()),
            Ok(_) => Ok(()),
            Err(_) => Err(format!(
                "container has runAsNonRoot and image has non-numeric user ({name}), cannot verify user is non-root"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(pod_sc: serde_json::Value, sc: serde_json::Value) -> (Pod, Container) {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"securityContext": pod_sc, "containers": [{"name": "c", "securityContext": sc}]}
        }))
        .expect("pod");
        let container = pod.spec.as_ref().expect("spec").containers[0].clone();
        (pod, container)
    }

    #[test]
    fn the_containers_context_wins_over_the_pods() {
        let (pod, c) = pod(
            serde_json::json!({"runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 2000, "supplementalGroups": [4000],
                "seccompProfile": {"type": "RuntimeDefault"}}),
            serde_json::json!({"runAsUser": 1001, "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}, "readOnlyRootFilesystem": true}),
        );
        let sc = effective(&pod, &c, None, std::path::Path::new("/seccomp")).expect("context");
        assert_eq!(sc.run_as_user, Some(1001));
        assert_eq!(sc.run_as_group, Some(3000));
        assert_eq!(sc.supplemental_groups, vec![4000, 2000]);
        assert!(sc.no_new_privileges && sc.read_only_root_filesystem);
        assert_eq!(sc.capabilities_drop, ["ALL"]);
        assert_eq!(sc.seccomp, SeccompProfile::RuntimeDefault);
    }

    #[test]
    fn run_as_non_root_is_checked_as_the_kubelet_checks_it() {
        let dir = std::path::Path::new("/seccomp");
        let (p, c) = pod(
            serde_json::json!({"runAsNonRoot": true}),
            serde_json::json!({}),
        );
        assert_eq!(
            effective(&p, &c, None, dir).expect_err("root"),
            "container has runAsNonRoot and image will run as root"
        );
        assert_eq!(
            effective(&p, &c, Some("nobody"), dir).expect_err("name"),
            "container has runAsNonRoot and image has non-numeric user (nobody), cannot verify user is non-root"
        );
        assert!(effective(&p, &c, Some("65534:65534"), dir).is_ok());
        let (p, c) = pod(
            serde_json::json!({"runAsNonRoot": true}),
            serde_json::json!({"runAsUser": 0}),
        );
        assert_eq!(
            effective(&p, &c, Some("1000"), dir).expect_err("uid 0"),
            "container's runAsUser breaks non-root policy"
        );
    }
}
