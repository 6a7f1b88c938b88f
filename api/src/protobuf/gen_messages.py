#!/usr/bin/env python3
"""Regenerates messages.txt, the wire table `protobuf::decode` walks.

Usage (from the repository root, after `cargo fetch` so both crates' sources are unpacked):

    python3 api/src/protobuf/gen_messages.py > api/src/protobuf/messages.txt

It reads two crates' sources as data, never compiling them:
  * k8s-pb 0.9: prost structs, one per Kubernetes protobuf message, with each field's tag and wire type;
  * k8s-openapi 0.29 (v1_33): the JSON name of each field (its `"podCIDR" => Field::Key_pod_cidr` lines),
    which fields are required (not `Option`), the OpenAPI definition name of each type and the
    apiVersion/kind of each top-level resource.
Only messages a top-level kind of v1_33 reaches are kept. A field is matched to its JSON name by comparing
lowercase names without `_` (prost writes `pod_cid_rs`, JSON `podCIDRs`).

Output lines:
  K <apiVersion> <kind> <message>            a top-level kind
  M <message>                                a message; its fields follow
  A <message>                                a message whose JSON form is the array in its one field
  <tag> <jsonName> <wire> <presence> [<message>]
      wire: string bytes bool int32 int64 double message map:string map:bytes map:message
      presence: r repeated | z a zero value is kept (Go pointer or required field) | o a zero value
                means unset (Go omits it from JSON) | i an embedded Go struct (`json:",inline"`), whose
                fields JSON lifts into the parent; its jsonName is `-`
"""

import glob
import os
import re
import sys

# Go pointer fields of a scalar type (kubernetes/api `types.go`): for these an explicit zero differs from
# unset (`replicas: 0`, `automountServiceAccountToken: false`), so a zero on the wire must stay. Every
# other optional scalar is a plain Go value, which the Go encoder writes even when zero and JSON omits.
POINTERS = """
core.v1.ConfigMap.immutable core.v1.Secret.immutable core.v1.ServiceAccount.automountServiceAccountToken
core.v1.PodSpec.terminationGracePeriodSeconds core.v1.PodSpec.activeDeadlineSeconds
core.v1.PodSpec.automountServiceAccountToken core.v1.PodSpec.shareProcessNamespace core.v1.PodSpec.priority
core.v1.PodSpec.enableServiceLinks core.v1.PodSpec.setHostnameAsFQDN core.v1.PodSpec.hostUsers
core.v1.PodSecurityContext.runAsUser core.v1.PodSecurityContext.runAsGroup
core.v1.PodSecurityContext.runAsNonRoot core.v1.PodSecurityContext.fsGroup
core.v1.SecurityContext.privileged core.v1.SecurityContext.runAsUser core.v1.SecurityContext.runAsGroup
core.v1.SecurityContext.runAsNonRoot core.v1.SecurityContext.readOnlyRootFilesystem
core.v1.SecurityContext.allowPrivilegeEscalation core.v1.WindowsSecurityContextOptions.hostProcess
core.v1.Probe.terminationGracePeriodSeconds core.v1.Toleration.tolerationSeconds
core.v1.ConfigMapVolumeSource.defaultMode core.v1.ConfigMapVolumeSource.optional
core.v1.SecretVolumeSource.defaultMode core.v1.SecretVolumeSource.optional
core.v1.ProjectedVolumeSource.defaultMode core.v1.DownwardAPIVolumeSource.defaultMode
core.v1.DownwardAPIVolumeFile.mode core.v1.KeyToPath.mode core.v1.ConfigMapProjection.optional
core.v1.SecretProjection.optional core.v1.ConfigMapKeySelector.optional core.v1.SecretKeySelector.optional
core.v1.ConfigMapEnvSource.optional core.v1.SecretEnvSource.optional core.v1.CSIVolumeSource.readOnly
core.v1.ServiceAccountTokenProjection.expirationSeconds core.v1.PersistentVolumeClaimSpec.storageClassName
core.v1.ServiceSpec.allocateLoadBalancerNodePorts core.v1.ClientIPConfig.timeoutSeconds
core.v1.TopologySpreadConstraint.minDomains core.v1.ContainerStatus.started
apps.v1.DeploymentSpec.replicas apps.v1.DeploymentSpec.revisionHistoryLimit
apps.v1.DeploymentSpec.progressDeadlineSeconds apps.v1.ReplicaSetSpec.replicas
apps.v1.StatefulSetSpec.replicas apps.v1.StatefulSetSpec.revisionHistoryLimit
apps.v1.RollingUpdateStatefulSetStrategy.partition apps.v1.DaemonSetSpec.revisionHistoryLimit
apps.v1.DeploymentStatus.collisionCount apps.v1.DeploymentStatus.terminatingReplicas
apps.v1.ReplicaSetStatus.terminatingReplicas apps.v1.StatefulSetStatus.collisionCount
apps.v1.DaemonSetStatus.collisionCount
batch.v1.JobSpec.parallelism batch.v1.JobSpec.completions batch.v1.JobSpec.activeDeadlineSeconds
batch.v1.JobSpec.backoffLimit batch.v1.JobSpec.backoffLimitPerIndex batch.v1.JobSpec.maxFailedIndexes
batch.v1.JobSpec.ttlSecondsAfterFinished batch.v1.JobSpec.manualSelector batch.v1.JobSpec.suspend
batch.v1.JobStatus.ready batch.v1.JobStatus.terminating
batch.v1.CronJobSpec.startingDeadlineSeconds batch.v1.CronJobSpec.suspend
batch.v1.CronJobSpec.successfulJobsHistoryLimit batch.v1.CronJobSpec.failedJobsHistoryLimit
autoscaling.v1.HorizontalPodAutoscalerSpec.minReplicas
autoscaling.v1.HorizontalPodAutoscalerSpec.targetCPUUtilizationPercentage
autoscaling.v2.HorizontalPodAutoscalerSpec.minReplicas autoscaling.v2.MetricTarget.averageUtilization
autoscaling.v2.HPAScalingRules.stabilizationWindowSeconds
coordination.v1.LeaseSpec.leaseDurationSeconds coordination.v1.LeaseSpec.leaseTransitions
networking.v1.NetworkPolicyPort.endPort discovery.v1.EndpointPort.port
discovery.v1.EndpointConditions.ready discovery.v1.EndpointConditions.serving
discovery.v1.EndpointConditions.terminating
authentication.v1.TokenRequestSpec.expirationSeconds
meta.v1.ObjectMeta.deletionGracePeriodSeconds meta.v1.OwnerReference.controller
meta.v1.OwnerReference.blockOwnerDeletion meta.v1.ListMeta.remainingItemCount
meta.v1.DeleteOptions.gracePeriodSeconds meta.v1.DeleteOptions.orphanDependents
meta.v1.DeleteOptions.ignoreStoreReadErrorWithClusterBreakingPotential
""".split()

REGISTRY = glob.glob(os.path.join(os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo")),
                                  "registry", "src", "*"))


def crate_src(name):
    for root in REGISTRY:
        path = os.path.join(root, name, "src")
        if os.path.isdir(path):
            return path
    sys.exit(f"{name} not found under $CARGO_HOME/registry/src: run `cargo fetch` first")


def squash(name):
    return name.replace("r#", "").replace("_", "").lower()


def openapi_types(root):
    """(module path, lowercase type) -> definition; the same -> {squashed field: (json, required)} for
    structs; and the top-level kinds."""
    names, types, kinds = {}, {}, []
    for path in glob.glob(os.path.join(root, "**", "*.rs"), recursive=True):
        text = open(path).read()
        m = re.match(r"// Generated from definition (\S+)", text)
        if not m:
            continue
        definition = m.group(1)
        module = os.path.relpath(os.path.dirname(path), root).replace(os.sep, "::")
        names[(module, definition.rsplit(".", 1)[1].lower())] = definition
        struct = re.search(r"pub struct (\w+) \{(.*?)\n\}", text, re.S)
        if not struct:
            continue  # a newtype such as Time or Quantity: decoded by name
        required = {f for f, t in re.findall(r"pub (\w+): (.*),", struct.group(2)) if not t.startswith("Option<")}
        fields = {}
        for json, key in re.findall(r'"([^"]+)" => Field::Key_(\w+),', text):
            fields[squash(key)] = fields[squash(json.lstrip("$"))] = (json, key in required)
        types[(module, struct.group(1).lower())] = fields
        r = re.search(r'const API_VERSION: &\'static str = "([^"]+)";.*?const KIND: &\'static str = "([^"]+)";',
                      text, re.S)
        if r:
            kinds.append((r.group(1), r.group(2), definition))
    return names, types, kinds


FIELD = re.compile(r"#\[prost\((\w+)(?: = \"([^\"]+)\")?, (?:(optional|repeated)(?:, boxed)?(?:, packed = \"\w+\")?, )?tag = \"(\d+)\"\)\]")


def prost_messages(root):
    """(module path, lowercase name) -> (rust name, [(tag, rust field, wire, repeated, (module, name) | None)])."""
    messages = {}
    for path in glob.glob(os.path.join(root, "**", "mod.rs"), recursive=True):
        module = os.path.relpath(os.path.dirname(path), root).replace(os.sep, "::")
        lines = open(path).read().split("\n")
        current, i = None, 0
        while i < len(lines):
            line = lines[i].strip()
            i += 1
            m = re.match(r"pub struct (\w+) \{", line)
            if m:
                current = (m.group(1), [])
                messages[(module, m.group(1).lower())] = current
                continue
            m = FIELD.match(line)
            if not m or current is None:
                continue
            decl = ""
            while not (decl.endswith(",") and decl.count("<") == decl.count(">")):
                decl += lines[i].strip()
                i += 1
            name, rust_type = re.match(r"pub ([\w#]+):(.*),$", decl).groups()
            kind, arg, card, tag = m.groups()
            if kind == "btree_map":
                wire, repeated = "map:" + arg.split(", ")[1], False
            else:
                wire, repeated = kind, card == "repeated"
            ref = None
            if wire in ("message", "map:message"):
                target = [p for p in re.findall(r"[\w:]+", rust_type) if not p.startswith("::")][-1]
                ref = resolve(module, target)
            current[1].append((int(tag), name, wire, repeated, ref))
    return messages


def resolve(module, target):
    parts, base = target.split("::"), module.split("::")
    while parts[0] == "super":
        parts, base = parts[1:], base[:-1]
    return ("::".join(base + parts[:-1]), parts[-1].lower())


def is_inline(fields, field, messages):
    """An embedded Go struct: a message field without a JSON name that shares field names with its
    parent (at least half: it may itself embed one, or hold fields newer than 1.33)."""
    _, rust, wire, repeated, ref = field
    if squash(rust) in fields or wire != "message" or repeated:
        return False
    inner = messages[ref][1]
    return 2 * sum(squash(f[1]) in fields for f in inner) >= len(inner)


def main():
    names, types, kinds = openapi_types(os.path.join(crate_src("k8s-openapi-0.29.0"), "v1_33"))
    messages = prost_messages(crate_src("k8s-pb-0.9.0"))
    packages = {module: d.rsplit(".", 1)[0] for (module, _), d in names.items()}

    def definition(key):
        return names.get(key) or f"{packages[key[0]]}.{messages[key][0]}"

    # an embedded struct has no OpenAPI twin: its JSON names are its parent's
    for key, fields in list(types.items()):
        for field in messages.get(key, (None, []))[1]:
            if is_inline(fields, field, messages):
                types.setdefault(field[4], fields)

    pointers = set(POINTERS)
    used = set()
    out = ["# The wire table of `protobuf::decode`, generated by gen_messages.py: do not edit."]
    # only what a top-level kind of 1.33 reaches: the rest is no request body
    by_definition = {definition(k): k for k in messages if k[0] in packages}
    reached, todo = set(), [by_definition[d] for _, _, d in kinds if d in by_definition]
    while todo:
        key = todo.pop()
        if key not in reached:
            reached.add(key)
            todo.extend(f[4] for f in messages[key][1] if f[4])
    for api_version, kind, d in sorted(kinds):
        if d in by_definition:  # k8s-pb lacks a few kinds that were dropped after 1.33
            out.append(f"K {api_version} {kind} {d}")
    for key in sorted(reached, key=definition):
        name = definition(key)
        fields = types.get(key, {})
        rust_fields = messages[key][1]
        wrapper = not fields and len(rust_fields) == 1 and rust_fields[0][1] == "items" and rust_fields[0][3]
        out.append(f"{'A' if wrapper else 'M'} {name}")
        short = name.removeprefix("io.k8s.api.").removeprefix("io.k8s.apimachinery.pkg.apis.")
        for field in sorted(rust_fields):
            tag, rust, wire, repeated, ref = field
            json, required = fields.get(squash(rust), (None, False))
            if json is None and fields:
                if is_inline(fields, field, messages):
                    out.append(f"{tag} - message i {definition(ref)}")
                else:
                    print(f"skipped: {name}.{rust} is not in Kubernetes 1.33", file=sys.stderr)
                continue
            if json is None:
                # no OpenAPI twin (Time, IntOrString, wrappers...): prost's snake_case back to camelCase
                head, *rest = rust.replace("r#", "").split("_")
                json = head + "".join(p[:1].upper() + p[1:] for p in rest)
            if f"{short}.{json}" in pointers:
                used.add(f"{short}.{json}")
                required = True
            presence = "r" if repeated else "z" if required else "o"
            target = f" {definition(ref)}" if ref else ""
            out.append(f"{tag} {json} {wire} {presence}{target}")
    unknown = pointers - used
    if unknown:
        sys.exit(f"POINTERS names fields that do not exist: {sorted(unknown)}")
    print("\n".join(out))


main()
