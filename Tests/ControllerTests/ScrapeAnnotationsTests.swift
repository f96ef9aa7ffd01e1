import Controller
import FpindexAPI
import Kubernetes
import Testing

/// How Prometheus finds the pods the controller makes: the conventional annotations on each pod
/// template and named ports (manifests/monitoring/). Pure.
@Suite("Desired children: scrape annotations")
struct ScrapeAnnotationsTests {
    @Test func indexPodsPointPrometheusAtTheUpdatersMetrics() throws {
        let set = DesiredChildren(Fixtures.cluster(replicas: 2)).statefulSet
        let template = try #require(set.spec?.template)
        #expect(
            template.metadata?.annotations == [
                "prometheus.io/scrape": "true", "prometheus.io/port": "8081", "prometheus.io/path": ProbePath.metrics,
            ])
        let containers = try #require(template.spec?.containers)
        // The annotated port is the updater's, and fpindex's own metrics port is named for a PodMonitor.
        #expect(
            containers.first { $0.name == "updater" }?.ports == [ContainerPort(name: "probes", containerPort: DesiredChildren.updaterPort)])
        #expect(containers.first { $0.name == "fpindex" }?.ports?.first?.name == "http")
    }

    @Test func proxyPodsPointPrometheusAtTheProxysMetrics() throws {
        let deployment = DesiredChildren(Fixtures.cluster(replicas: 2)).proxyDeployment
        let template = try #require(deployment.spec?.template)
        #expect(
            template.metadata?.annotations == [
                "prometheus.io/scrape": "true", "prometheus.io/port": "8080", "prometheus.io/path": ProbePath.metrics,
            ])
        #expect(template.spec?.containers.first?.ports?.first == ContainerPort(name: "http", containerPort: DesiredChildren.proxyPort))
    }

    @Test func proxiesServingHTTPSAreScrapedOverHTTPS() throws {
        var cluster = Fixtures.cluster(replicas: 2)
        cluster.spec.proxy = .init()
        cluster.spec.proxy?.tls = .init(secretName: "proxy-cert")
        let template = try #require(DesiredChildren(cluster).proxyDeployment.spec?.template)
        #expect(template.metadata?.annotations?["prometheus.io/scheme"] == "https")
        #expect(template.metadata?.annotations?["prometheus.io/port"] == "8080")
    }
}
