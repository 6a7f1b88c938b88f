//! Who a container's process runs as: `runAsUser`/`runAsGroup` over the image's `User`, whose
//! names are looked up in the container's own `/etc/passwd` and `/etc/group` (never the host's),
//! plus the user's supplementary groups there, as runc and containerd resolve them.

use std::path::Path;

use skiff_sandbox::SecurityContext;

/// The resolved identity of a container's process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// The user's name in the image, when it has one (for `HOME`).
    pub home: String,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    UnknownUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    UnknownGroup(String),
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn passwd(rootfs: &Path) -> Vec<PasswdEntry> {
    let text = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: f.get(5).map_or_else(|| "/".into(), |h| h.to_string()),
            })
        })
        .collect()
}

fn groups(rootfs: &Path) -> Vec<GroupEntry> {
    let text = std::fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Resolves the process identity: the security context's numeric ids win; the image's `User`
/// (`name`, `uid`, `name:group`, `uid:gid`) fills what they leave open. A name the image's files
/// do not know is an error; a numeric id needs no entry (runc's rule).
pub(crate) fn resolve(
    rootfs: &Path,
    image_user: Option<&str>,
    security: &SecurityContext,
) -> Result<Identity, UserError> {
    let users = passwd(rootfs);
    let all_groups = groups(rootfs);
    let (user_part, group_part) = match image_user.filter(|u| !u.is_empty()) {
        Some(u) => match u.split_once(':') {
            Some((user, group)) => (Some(user), Some(group)),
            None => (Some(u), None),
        },
        None => (None, None),
    };
    let entry = match (security.run_as_user, user_part) {
        (Some(uid), _) => users.iter().find(|e| e.uid == uid),
        (None, Some(name)) => match name.parse::<u32>() {
            Ok(uid) => users.iter().find(|e| e.uid == uid),
            Err(_) => Some(
                users
                    .iter()
                    .find(|e| e.name == name)
                    .ok_or_else(|| UserError::UnknownUser(name.to_string()))?,
            ),
        },
        (None, None) => users.iter().find(|e| e.uid == 0),
    };
    let uid = security
        .run_as_user
        .or_else(|| user_part.and_then(|u| u.parse().ok()))
        .or(entry.map(|e| e.uid))
        .unwrap_or(0);
    let image_gid = match group_part {
        Some(g) => Some(match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                all_groups
                    .iter()
                    .find(|e| e.name == g)
                    .ok_or_else(|| UserError::UnknownGroup(g.to_string()))?
                    .gid
            }
        }),
        None => None,
    };
    let gid = security
        .run_as_group
        .or(image_gid)
        .or(entry.map(|e| e.gid))
        .unwrap_or(0);
    let mut additional_gids: Vec<u32> = entry
        .map(|e| {
            all_groups
                .iter()
                .filter(|g| g.members.contains(&e.name))
                .map(|g| g.gid)
                .collect()
        })
        .unwrap_or_default();
    additional_gids.extend(&security.supplemental_groups);
    additional_gids.retain(|g| *g != gid);
    additional_gids.sort_unstable();
    additional_gids.dedup();
    Ok(Identity {
        uid,
        gid,
        additional_gids,
        home: entry.map_or_else(|| "/".into(), |e| e.home.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("etc")).expect("etc");
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )
        .expect("passwd");
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nwww:x:33:\nstaff:x:50:www,other\nnogroup:x:65534:\n",
        )
        .expect("group");
        dir
    }

    fn sc(user: Option<u32>, group: Option<u32>, supplemental: &[u32]) -> SecurityContext {
        SecurityContext {
            run_as_user: user,
            run_as_group: group,
            supplemental_groups: supplemental.to_vec(),
            ..SecurityContext::default()
        }
    }

    #[test]
    fn image_users_resolve_through_the_images_own_files() {
        let root = rootfs();
        let none = sc(None, None, &[]);
        let as_root = resolve(root.path(), None, &none).expect("root");
        assert_eq!(
            (as_root.uid, as_root.gid, as_root.home.as_str()),
            (0, 0, "/root")
        );
        let www = resolve(root.path(), Some("www"), &none).expect("www");
        assert_eq!((www.uid, www.gid), (33, 33));
        assert_eq!(www.additional_gids, vec![50], "www is a member of staff");
        let numeric = resolve(root.path(), Some("1000:2000"), &none).expect("numeric");
        assert_eq!(
            (numeric.uid, numeric.gid),
            (1000, 2000),
            "numeric ids need no entry"
        );
        let named_group = resolve(root.path(), Some("nobody:staff"), &none).expect("group");
        assert_eq!((named_group.uid, named_group.gid), (65534, 50));
        assert_eq!(
            resolve(root.path(), Some("ghost"), &none)
                .expect_err("unknown")
                .to_string(),
            "unable to find user ghost: no matching entries in passwd file"
        );
    }

    #[test]
    fn the_security_context_wins_over_the_image() {
        let root = rootfs();
        let id = resolve(
            root.path(),
            Some("www"),
            &sc(Some(33), Some(7), &[50, 9, 7]),
        )
        .expect("resolve");
        assert_eq!((id.uid, id.gid), (33, 7));
        assert_eq!(
            id.additional_gids,
            vec![9, 50],
            "the primary group is not repeated"
        );
        let unknown = resolve(root.path(), Some("ghost"), &sc(Some(4242), None, &[]));
        assert_eq!(
            unknown.expect("runAsUser needs no entry").gid,
            0,
            "an id without an entry runs in group 0"
        );
    }
}
