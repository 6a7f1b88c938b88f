//! A container's argv from its spec and its image, as Kubernetes documents it ("Define a
//! command and arguments for a container"): `command` replaces the image's Entrypoint, `args`
//! replaces its Cmd, and a `command` given without `args` drops the image's Cmd. `$(VAR)` in
//! either expands from the container's environment.

use k8s_openapi::api::core::v1::Container;
use skiff_sandbox::ImageConfig;

use crate::env::expansion::{expand, lookup};

/// The argv to run. When the image names no program at all (a Wasm artifact carries neither
/// Entrypoint nor Cmd) and `command` is empty, `fallback_name` (the name a module sees as
/// `argv[0]`) comes first, followed by `args`: a Wasm pod's `args` are its program's
/// arguments, never its name.
pub fn container_argv(
    container: &Container,
    image: &ImageConfig,
    env: &[(String, String)],
    fallback_name: &str,
) -> Vec<String> {
    let expanded =
        |list: &[String]| -> Vec<String> { list.iter().map(|s| expand(s, lookup(env))).collect() };
    let command = container.command.as_deref().unwrap_or_default();
    let args = container.args.as_deref().unwrap_or_default();
    let image_is_bare = image.entrypoint.is_empty() && image.cmd.is_empty();
    let mut argv = if command.is_empty() && image_is_bare {
        vec![fallback_name.to_owned()]
    } else if command.is_empty() {
        image.entrypoint.clone()
    } else {
        expanded(command)
    };
    if !args.is_empty() {
        argv.extend(expanded(args));
    } else if command.is_empty() {
        argv.extend(image.cmd.iter().cloned());
    }
    argv
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(command: &[&str], args: &[&str]) -> Container {
        let list = |l: &[&str]| (!l.is_empty()).then(|| l.iter().map(|s| s.to_string()).collect());
        Container {
            name: "app".into(),
            command: list(command),
            args: list(args),
            ..Default::default()
        }
    }

    fn image() -> ImageConfig {
        ImageConfig {
            entrypoint: vec!["/entry".into()],
            cmd: vec!["--default".into()],
            ..Default::default()
        }
    }

    fn argv(command: &[&str], args: &[&str], image: &ImageConfig) -> Vec<String> {
        let env = [("GREETING".to_string(), "hello".to_string())];
        container_argv(&container(command, args), image, &env, "hello.wasm")
    }

    #[test]
    fn kubernetes_command_and_args_table() {
        let img = image();
        assert_eq!(argv(&[], &[], &img), ["/entry", "--default"]);
        assert_eq!(argv(&["/cmd"], &[], &img), ["/cmd"], "command drops Cmd");
        assert_eq!(argv(&[], &["a", "b"], &img), ["/entry", "a", "b"]);
        assert_eq!(argv(&["/cmd"], &["a"], &img), ["/cmd", "a"]);
    }

    #[test]
    fn expands_env_in_command_and_args_but_not_image_defaults() {
        let img = ImageConfig {
            cmd: vec!["$(GREETING)".into()],
            ..image()
        };
        assert_eq!(argv(&[], &[], &img), ["/entry", "$(GREETING)"]);
        assert_eq!(
            argv(
                &["say-$(GREETING)"],
                &["$(GREETING)", "$$(GREETING)", "$(NOPE)"],
                &img
            ),
            ["say-hello", "hello", "$(GREETING)", "$(NOPE)"]
        );
    }

    #[test]
    fn empty_everything_runs_the_fallback_name() {
        let wasm = ImageConfig::default();
        assert_eq!(argv(&[], &[], &wasm), ["hello.wasm"]);
        assert_eq!(argv(&[], &["--flag"], &wasm), ["hello.wasm", "--flag"]);
        assert_eq!(argv(&["main"], &["x"], &wasm), ["main", "x"]);
        let no_entrypoint = ImageConfig {
            cmd: vec!["sh".into()],
            ..Default::default()
        };
        assert_eq!(
            argv(&[], &["sh", "-c", "true"], &no_entrypoint),
            ["sh", "-c", "true"],
            "an OCI image without Entrypoint runs args[0]"
        );
    }
}
