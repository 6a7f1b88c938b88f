//! Request paths of the Kubernetes API, parsed into a [`Route`].

use skiff_api::{ApiError, ResourceInfo, registry};

/// What a request path names.
#[derive(Debug)]
pub enum Route {
    Version,
    Health,
    /// `/api` (core) or `/apis` (groups).
    ApiRoot {
        core: bool,
    },
    /// `/apis/GROUP`
    Group(String),
    /// `/api/v1`, `/apis/GROUP/VERSION`
    GroupVersion {
        group: String,
        version: String,
    },
    OpenApiV3Index,
    OpenApiV3 {
        group: String,
        version: String,
    },
    OpenApiV2,
    Resource(ResourcePath),
}

/// `/api(s)/…/[namespaces/NS/]RESOURCE[/NAME[/SUBRESOURCE]]`.
#[derive(Debug, Clone)]
pub struct ResourcePath {
    pub info: &'static ResourceInfo,
    /// The namespace in the path; `None` for cluster-scoped resources and all-namespace lists.
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

pub fn parse(path: &str) -> Result<Route, ApiError> {
    let trimmed = path.trim_end_matches('/');
    let segments: Vec<&str> = trimmed.split('/').skip(1).collect();
    match segments.as_slice() {
        ["version"] => Ok(Route::Version),
        ["healthz" | "livez" | "readyz", ..] => Ok(Route::Health),
        ["api"] => Ok(Route::ApiRoot { core: true }),
        ["apis"] => Ok(Route::ApiRoot { core: false }),
        ["openapi", "v3"] => Ok(Route::OpenApiV3Index),
        ["openapi", "v3", "api", v] => Ok(Route::OpenApiV3 {
            group: String::new(),
            version: v.to_string(),
        }),
        ["openapi", "v3", "apis", g, v] => Ok(Route::OpenApiV3 {
            group: g.to_string(),
            version: v.to_string(),
        }),
        ["openapi", "v2"] | ["swagger.json"] => Ok(Route::OpenApiV2),
        ["api", v] => Ok(Route::GroupVersion {
            group: String::new(),
            version: v.to_string(),
        }),
        ["apis", g] => Ok(Route::Group(g.to_string())),
        ["apis", g, v] => Ok(Route::GroupVersion {
            group: g.to_string(),
            version: v.to_string(),
        }),
        ["api", v, rest @ ..] => resource("", v, rest),
        ["apis", g, v, rest @ ..] => resource(g, v, rest),
        _ => Err(ApiError::no_such_resource()),
    }
}

fn resource(group: &str, version: &str, rest: &[&str]) -> Result<Route, ApiError> {
    let find = |plural: &str| {
        registry::find(group, version, plural).ok_or_else(ApiError::no_such_resource)
    };
    let (namespace, rest) = match rest {
        // `namespaces/NS/RESOURCE...` addresses namespaced resources; `namespaces/NS[/sub]` the namespace itself.
        ["namespaces", ns, plural, tail @ ..] if group.is_empty() || !plural.is_empty() => {
            let info = find(plural);
            match info {
                Ok(info) if info.namespaced => (Some(ns.to_string()), rest[2..].to_vec()),
                // `namespaces/NS/finalize` and `namespaces/NS/status` are subresources of a namespace.
                _ if group.is_empty() && tail.is_empty() => (None, rest.to_vec()),
                _ => return Err(ApiError::no_such_resource()),
            }
        }
        _ => (None, rest.to_vec()),
    };
    let (info, name, subresource) = match rest.as_slice() {
        [plural] => (find(plural)?, None, None),
        [plural, name] => (find(plural)?, Some(name.to_string()), None),
        [plural, name, sub] => (find(plural)?, Some(name.to_string()), Some(sub.to_string())),
        _ => return Err(ApiError::no_such_resource()),
    };
    if let Some(sub) = &subresource
        && !info.has_subresource(sub)
    {
        return Err(ApiError::no_such_resource());
    }
    if info.namespaced && namespace.is_none() && name.is_some() {
        // A namespaced object addressed without its namespace.
        return Err(ApiError::no_such_resource());
    }
    if name.as_deref() == Some("") {
        return Err(ApiError::no_such_resource());
    }
    Ok(Route::Resource(ResourcePath {
        info,
        namespace,
        name,
        subresource,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(p: &str) -> ResourcePath {
        match parse(p).unwrap() {
            Route::Resource(r) => r,
            other => panic!("{p}: {other:?}"),
        }
    }

    #[test]
    fn parses_resource_paths() {
        let r = res("/api/v1/namespaces/default/pods/web/log");
        assert_eq!(r.info.plural, "pods");
        assert_eq!(r.namespace.as_deref(), Some("default"));
        assert_eq!(r.name.as_deref(), Some("web"));
        assert_eq!(r.subresource.as_deref(), Some("log"));
        let r = res("/api/v1/pods");
        assert!(r.namespace.is_none() && r.name.is_none());
        let r = res("/api/v1/namespaces/kube-system");
        assert_eq!(r.info.plural, "namespaces");
        assert_eq!(r.name.as_deref(), Some("kube-system"));
        let r = res("/api/v1/namespaces/gone/finalize");
        assert_eq!(r.subresource.as_deref(), Some("finalize"));
        let r = res("/apis/apps/v1/namespaces/a/deployments/d/scale");
        assert_eq!(r.info.kind, "Deployment");
        let r = res("/api/v1/nodes/n1/status");
        assert_eq!(r.subresource.as_deref(), Some("status"));
    }

    #[test]
    fn unknown_paths_are_not_found() {
        for p in [
            "/api/v1/namespaces/default/pods/web/scale",
            "/api/v1/widgets",
            "/apis/apps/v9/deployments",
            "/api/v1/pods/web",
            "/nonsense",
        ] {
            let e = parse(p).unwrap_err();
            assert_eq!(e.code, 404, "{p}");
        }
    }
}
