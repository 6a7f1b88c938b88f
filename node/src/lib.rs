//! The Skiff node agent: registers its Node, renews its Lease, runs the pods bound to it through
//! the [`skiff_sandbox::PodSandbox`] runtimes, and serves their logs.
