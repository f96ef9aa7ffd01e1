# fpindex-cluster: the two commands a newcomer needs are `make run` and `make test`.
SWIFT ?= swift

.PHONY: all setup build test test-envtest run run-dataplane stop kubesim bench bench-proxy bench-replay bench-e2e bench-legacy clean

all: build

## setup: install the Debian packages and nats-server 2.15 (idempotent, quick when done)
setup:
	@hack/setup

## build: debug build of every target
build: setup
	$(SWIFT) build

## test: set up, build everything, run every test (unit, HTTP, real nats-server; the envtest
## suites too when KUBE_ASSETS names a folder with kube-apiserver and kube-controller-manager)
## Most tests start servers of their own (nats-server, kubesim, fpindex, a kube-apiserver) and give
## them time limits; swift-testing would otherwise start every suite at once, and on a 2-core
## machine the servers starved past their limits. TEST_PARALLELISM bounds the tests run together.
TEST_PARALLELISM ?= 6

test: setup
	$(SWIFT) build --build-tests
	@[ -n "$$KUBE_ASSETS" ] || echo "make test: the envtest suites (a real kube-apiserver) are not run: KUBE_ASSETS is not set (see README, Tests)"
	SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH=$(TEST_PARALLELISM) \
	  $(SWIFT) test --skip-build --disable-xctest --skip MillionFingerprintsTests --skip 'ClusterTests\.ClusterTests'
	@# Whole clusters on kubesim's node (a controller, NATS, replicas and proxies each, with the
	@# kubelet's probe timeouts): three CI runs each saw one fail with pods restarted or unready
	@# at once, which points at probes timing out under the load of the rest. They run next, two at a time.
	SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH=2 \
	  $(SWIFT) test --skip-build --disable-xctest --filter 'ClusterTests\.ClusterTests'
	@# The million-fingerprint migration keeps both cores busy for minutes: run alongside the rest,
	@# it starved the in-process servers' time limits, so it runs on its own, after them.
	$(SWIFT) test --skip-build --disable-xctest --filter MillionFingerprintsTests

## test-envtest: only the suites that run against a real Kubernetes control plane ($KUBE_ASSETS)
test-envtest: setup
	@[ -n "$$KUBE_ASSETS" ] || { echo "make test-envtest: set KUBE_ASSETS to a folder with kube-apiserver and kube-controller-manager v1.28+"; exit 1; }
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --disable-xctest --filter Envtest

## run: the main job: a whole FpindexCluster on this machine (kubesim runs the pods; needs root); see README
run: setup
	@hack/run

## run-dataplane: the data plane alone on loopback (nats-server, two replicas, the proxy; no root needed)
run-dataplane: setup
	@hack/run-dataplane

## stop: stop what `make run` started
stop:
	@hack/stop

## kubesim: the Kubernetes API server emulator on 127.0.0.1:$KUBESIM_PORT (6443); kubeconfig in .local/kubesim/
kubesim:
	$(SWIFT) build --product kubesim
	@mkdir -p .local/kubesim
	.build/debug/kubesim --listen 127.0.0.1:$${KUBESIM_PORT:-6443} --write-kubeconfig .local/kubesim/kubeconfig

## bench: the index benchmark (release build): fpindex-bench index
bench: setup
	$(SWIFT) build -c release --product fpindex-dev
	$(SWIFT) build -c release --product fpindex-bench
	.build/release/fpindex-bench index --dev-binary .build/release/fpindex-dev $(BENCH_ARGS)

## bench-proxy: the proxy benchmark (release build): fpindex-bench proxy
bench-proxy: setup
	$(SWIFT) build -c release --product fpindex-proxy
	$(SWIFT) build -c release --product fpindex-bench
	.build/release/fpindex-bench proxy --proxy-binary .build/release/fpindex-proxy $(BENCH_ARGS)

## bench-replay: a fresh replica replaying the stream (release build): fpindex-bench replay
bench-replay: setup
	$(SWIFT) build -c release
	.build/release/fpindex-bench replay $(BENCH_ARGS)

## bench-e2e: steady writes through the proxy, visibility on two replicas: fpindex-bench e2e
bench-e2e: setup
	$(SWIFT) build -c release
	.build/release/fpindex-bench e2e $(BENCH_ARGS)

## bench-legacy: inserts and searches through the proxy's legacy port, beside HTTP _update: fpindex-bench legacy
bench-legacy: setup
	$(SWIFT) build -c release
	.build/release/fpindex-bench legacy $(BENCH_ARGS)

clean:
	rm -rf .build .local
