// kubesim: a Kubernetes API server emulator.
