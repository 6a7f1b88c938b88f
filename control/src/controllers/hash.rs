//! The short hash that names a template's revision: a Deployment's `pod-template-hash` (the
//! suffix of its ReplicaSets' names) and a DaemonSet's or StatefulSet's ControllerRevision.
//! Kubernetes hashes a dump of its Go structs, which nothing outside the controller recomputes;
//! this hashes the template's JSON the same way (FNV-1a, 32 bits, with the collision count mixed
//! in) and spells it with the same vowel-free alphabet, so names look as kubectl users expect
//! (`web-7d9c5b8f6`) and stay stable across restarts.

use serde::Serialize;

const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The hash of `template`, changed by a `collision_count` (a Deployment's
/// `status.collisionCount`) when its name was already taken by an object with another template.
pub fn template_hash(template: &impl Serialize, collision_count: Option<i32>) -> String {
    let mut hash = Fnv1a::default();
    // Serializing plain API types cannot fail; an empty hash input would still be stable.
    hash.write(&serde_json::to_vec(template).unwrap_or_default());
    if let Some(count) = collision_count {
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&(count as u32).to_le_bytes());
        hash.write(&bytes);
    }
    safe_encode(&hash.0.to_string())
}

#[derive(Clone, Copy)]
struct Fnv1a(u32);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0x811c_9dc5)
    }
}

impl Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u32::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0193);
        }
    }
}

/// apimachinery's `rand.SafeEncodeString`: each character mapped into [`ALPHANUMS`], so no
/// vowels (no words) and no look-alike characters.
fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| ALPHANUMS[b as usize % ALPHANUMS.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fnv1a_matches_the_reference_values() {
        let mut h = Fnv1a::default();
        h.write(b"a");
        assert_eq!(h.0, 0xe40c_292c);
        let mut h = Fnv1a::default();
        h.write(b"foobar");
        assert_eq!(h.0, 0xbf9c_f968);
    }

    #[test]
    fn equal_templates_hash_alike_and_collisions_move_the_hash() {
        let a = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
        let b = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "j"}]}});
        let h = template_hash(&a, None);
        assert_eq!(h, template_hash(&a.clone(), None));
        assert_ne!(h, template_hash(&b, None));
        assert_ne!(h, template_hash(&a, Some(1)));
        assert!(
            h.len() <= 10 && h.bytes().all(|c| ALPHANUMS.contains(&c)),
            "{h}"
        );
    }
}
