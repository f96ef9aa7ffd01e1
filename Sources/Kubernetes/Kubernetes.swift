// The Kubernetes REST client. See KubernetesClient.swift.
