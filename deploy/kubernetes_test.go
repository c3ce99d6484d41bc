package deploy

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/gateway"
)

// kubeObjects loads every object of deploy/kubernetes, keyed by kind, and
// proves each has the shape of a Kubernetes object.
func kubeObjects(t *testing.T) map[string][]map[string]any {
	t.Helper()
	objects := map[string][]map[string]any{}
	paths, err := filepath.Glob(filepath.Join("kubernetes", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range paths {
		for i, doc := range mustDocs(t, path) {
			kind := str(doc, "kind")
			if str(doc, "apiVersion") == "" || kind == "" {
				t.Errorf("%s document %d: apiVersion and kind are required", path, i+1)
			}
			if kind != "Kustomization" && str(doc, "metadata", "name") == "" {
				t.Errorf("%s document %d: metadata.name is required", path, i+1)
			}
			objects[kind] = append(objects[kind], doc)
		}
	}
	return objects
}

// named returns the object of kind with the given name.
func named(t *testing.T, objects map[string][]map[string]any, kind, name string) map[string]any {
	t.Helper()
	for _, o := range objects[kind] {
		if str(o, "metadata", "name") == name {
			return o
		}
	}
	t.Fatalf("no %s named %s", kind, name)
	return nil
}

// only returns the single object of kind.
func only(t *testing.T, objects map[string][]map[string]any, kind string) map[string]any {
	t.Helper()
	if n := len(objects[kind]); n != 1 {
		t.Fatalf("%d objects of kind %s, want 1", n, kind)
	}
	return objects[kind][0]
}

func TestKubernetesManifests(t *testing.T) {
	objects := kubeObjects(t)

	t.Run("kustomization lists existing files", func(t *testing.T) {
		k := only(t, objects, "Kustomization")
		resources, _ := dig(k, "resources").([]any)
		if len(resources) == 0 {
			t.Fatal("no resources")
		}
		for _, r := range resources {
			if _, err := os.Stat(filepath.Join("kubernetes", r.(string))); err != nil {
				t.Errorf("resource %v: %v", r, err)
			}
		}
	})

	deploy := named(t, objects, "Deployment", "recoverpasscode-worker")
	pod := dig(deploy, "spec", "template")
	podLabels, _ := dig(pod, "metadata", "labels").(map[string]any)
	container := dig(pod, "spec", "containers", 0)

	t.Run("selectors match the pod labels", func(t *testing.T) {
		for kind, path := range map[string][]any{
			"Deployment":          {"spec", "selector", "matchLabels"},
			"PodDisruptionBudget": {"spec", "selector", "matchLabels"},
			"Service":             {"spec", "selector"},
		} {
			name := "recoverpasscode-worker"
			if kind == "Service" {
				name = "recoverpasscode-worker-metrics"
			}
			sel, _ := dig(named(t, objects, kind, name), path...).(map[string]any)
			if len(sel) == 0 {
				t.Errorf("%s: empty selector", kind)
			}
			for k, v := range sel {
				if podLabels[k] != v {
					t.Errorf("%s selects %s=%v, which the pods do not carry", kind, k, v)
				}
			}
		}
	})

	t.Run("workload identity", func(t *testing.T) {
		sa := only(t, objects, "ServiceAccount")
		if str(pod, "spec", "serviceAccountName") != str(sa, "metadata", "name") {
			t.Errorf("pods run as %q, not as the ServiceAccount %q", str(pod, "spec", "serviceAccountName"), str(sa, "metadata", "name"))
		}
		if str(sa, "metadata", "annotations", "azure.workload.identity/client-id") == "" {
			t.Error("the ServiceAccount lacks the azure.workload.identity/client-id annotation")
		}
		if podLabels["azure.workload.identity/use"] != "true" {
			t.Error(`pods lack the label azure.workload.identity/use: "true", so no federated token is injected`)
		}
	})

	t.Run("configuration sources exist", func(t *testing.T) {
		cm := named(t, objects, "ConfigMap", "recoverpasscode-worker")
		if got := str(dig(container, "envFrom", 0), "configMapRef", "name"); got != str(cm, "metadata", "name") {
			t.Errorf("envFrom names ConfigMap %q, the manifest is %q", got, str(cm, "metadata", "name"))
		}
		if got := str(cm, "data", "RECOVER_HTTP_ADDR"); got != "0.0.0.0:9464" {
			t.Errorf("RECOVER_HTTP_ADDR = %q, want 0.0.0.0:9464 so that probes and Prometheus reach it", got)
		}
	})

	t.Run("probes and metrics port", func(t *testing.T) {
		if p := dig(container, "ports", 0, "containerPort"); p != 9464 {
			t.Errorf("container port = %v, want 9464", p)
		}
		for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/healthz"} {
			if got := str(container, probe, "httpGet", "path"); got != path {
				t.Errorf("%s path = %q, want %s", probe, got, path)
			}
			if got := str(container, probe, "httpGet", "port"); got != str(container, "ports", 0, "name") {
				t.Errorf("%s port = %q, not the metrics port", probe, got)
			}
		}
		if got := str(named(t, objects, "Service", "recoverpasscode-worker-metrics"), "spec", "ports", 0, "targetPort"); got != str(container, "ports", 0, "name") {
			t.Errorf("Service targets port %q, not the metrics port", got)
		}
	})

	t.Run("hardening and draining", func(t *testing.T) {
		for check, holds := range map[string]bool{
			"pod runAsNonRoot":                         dig(pod, "spec", "securityContext", "runAsNonRoot") == true,
			"container readOnlyRootFilesystem":         dig(container, "securityContext", "readOnlyRootFilesystem") == true,
			"container allowPrivilegeEscalation false": dig(container, "securityContext", "allowPrivilegeEscalation") == false,
			"container drops ALL capabilities":         dig(container, "securityContext", "capabilities", "drop", 0) == "ALL",
			"memory limit set":                         dig(container, "resources", "limits", "memory") != nil,
		} {
			if !holds {
				t.Errorf("%s: does not hold", check)
			}
		}
		if g, _ := dig(pod, "spec", "terminationGracePeriodSeconds").(int); g < 60 {
			t.Errorf("terminationGracePeriodSeconds = %d, too short to drain jobs in flight", g)
		}
	})

	t.Run("KEDA scales the worker on the jobs consumer", func(t *testing.T) {
		so := only(t, objects, "ScaledObject")
		if str(so, "spec", "scaleTargetRef", "name") != str(deploy, "metadata", "name") {
			t.Errorf("ScaledObject targets %q", str(so, "spec", "scaleTargetRef", "name"))
		}
		trigger := dig(so, "spec", "triggers", 0)
		for key, want := range map[string]string{"stream": jobsStream, "consumer": consumerName, "account": "RECOVER"} {
			if got := str(trigger, "metadata", key); got != want {
				t.Errorf("trigger %s = %q, want %q", key, got, want)
			}
		}
		if str(trigger, "type") != "nats-jetstream" {
			t.Errorf("trigger type = %q, want nats-jetstream", str(trigger, "type"))
		}
	})
}

// TestKubernetesGateway proves the gateway's objects: listed by the
// kustomization with their image, selecting the gateway's pods and never
// the workers' (nor the workers' objects the gateway's), configured for its
// own NATS user from a ConfigMap and two Secrets, probed on its HTTP port,
// hardened like the worker and given the time to finish a Prefer: wait.
func TestKubernetesGateway(t *testing.T) {
	objects := kubeObjects(t)
	const name = "recoverpasscode-gateway"
	k := only(t, objects, "Kustomization")
	resources, _ := dig(k, "resources").([]any)
	for _, f := range []string{"gateway-configmap.yaml", "gateway-deployment.yaml", "gateway-pdb.yaml", "gateway-service.yaml"} {
		if !slices.Contains(resources, any(f)) {
			t.Errorf("kustomization.yaml does not list %s", f)
		}
	}

	deploy := named(t, objects, "Deployment", name)
	pod := dig(deploy, "spec", "template")
	podLabels, _ := dig(pod, "metadata", "labels").(map[string]any)
	container := dig(pod, "spec", "containers", 0)
	workerLabels, _ := dig(named(t, objects, "Deployment", "recoverpasscode-worker"), "spec", "template", "metadata", "labels").(map[string]any)

	t.Run("the image is the gateway target", func(t *testing.T) {
		image := str(container, "image")
		images, _ := dig(k, "images").([]any)
		if !slices.ContainsFunc(images, func(i any) bool { return str(i, "name") == image }) {
			t.Errorf("image %q is not under the kustomization's images", image)
		}
		if image == str(dig(named(t, objects, "Deployment", "recoverpasscode-worker"), "spec", "template", "spec", "containers", 0), "image") {
			t.Errorf("the gateway runs the worker's image %q, not the Dockerfile's gateway target", image)
		}
		if _, ok := dockerfileEnvNames(t, "Dockerfile")["gateway"]; !ok {
			t.Error("the Dockerfile has no gateway stage setting GATEWAY_HTTP_ADDR")
		}
	})

	t.Run("selectors match the gateway's pods and not the workers'", func(t *testing.T) {
		selectors := map[string][]any{
			"Deployment":          {"spec", "selector", "matchLabels"},
			"PodDisruptionBudget": {"spec", "selector", "matchLabels"},
			"Service":             {"spec", "selector"},
		}
		for kind, path := range selectors {
			sel, _ := dig(named(t, objects, kind, name), path...).(map[string]any)
			if len(sel) == 0 {
				t.Errorf("%s: empty selector", kind)
			}
			if !selects(sel, podLabels) {
				t.Errorf("%s %s selects %v, which the gateway's pods (%v) do not all carry", kind, name, sel, podLabels)
			}
			if selects(sel, workerLabels) {
				t.Errorf("%s %s selects the workers' pods too", kind, name)
			}
		}
		for kind, o := range map[string]map[string]any{
			"Deployment":          named(t, objects, "Deployment", "recoverpasscode-worker"),
			"PodDisruptionBudget": named(t, objects, "PodDisruptionBudget", "recoverpasscode-worker"),
			"Service":             named(t, objects, "Service", "recoverpasscode-worker-metrics"),
		} {
			if sel, _ := dig(o, selectors[kind]...).(map[string]any); selects(sel, podLabels) {
				t.Errorf("the workers' %s selects the gateway's pods too", kind)
			}
		}
	})

	cm := named(t, objects, "ConfigMap", name)
	t.Run("its own NATS user, configuration and secrets", func(t *testing.T) {
		if got := str(dig(container, "envFrom", 0), "configMapRef", "name"); got != name {
			t.Errorf("envFrom names ConfigMap %q, want %s", got, name)
		}
		for key, want := range map[string]string{"NATS_USER": "gateway", "NATS_INBOX_PREFIX": inboxPrefix("gateway"), "GATEWAY_HTTP_ADDR": "0.0.0.0:8080"} {
			if got := str(cm, "data", key); got != want {
				t.Errorf("%s = %q, want %q", key, got, want)
			}
		}
		env, _ := dig(container, "env").([]any)
		i := slices.IndexFunc(env, func(e any) bool { return str(e, "name") == "NATS_PASSWORD" })
		if i < 0 || str(env[i], "valueFrom", "secretKeyRef", "name") == "" {
			t.Fatal("NATS_PASSWORD does not come from a Secret")
		}
		secrets := map[string]string{} // mount path -> Secret
		volumes, _ := dig(pod, "spec", "volumes").([]any)
		mounts, _ := dig(container, "volumeMounts").([]any)
		for _, m := range mounts {
			for _, v := range volumes {
				if str(v, "name") == str(m, "name") && str(v, "secret", "secretName") != "" {
					secrets[str(m, "mountPath")] = str(v, "secret", "secretName")
				}
			}
		}
		config := str(cm, "data", "GATEWAY_CONFIG")
		if secret := secrets[filepath.Dir(config)]; secret == "" {
			t.Errorf("GATEWAY_CONFIG %q is not in a mounted Secret (mounts: %v)", config, secrets)
		} else if secret == str(env[i], "valueFrom", "secretKeyRef", "name") {
			t.Errorf("the sources file and the NATS password share the Secret %s", secret)
		}
	})

	t.Run("probes on the HTTP port", func(t *testing.T) {
		port := str(container, "ports", 0, "name")
		if p := dig(container, "ports", 0, "containerPort"); p != 8080 || !strings.HasSuffix(str(cm, "data", "GATEWAY_HTTP_ADDR"), ":8080") {
			t.Errorf("container port %v, GATEWAY_HTTP_ADDR %q: want both 8080", p, str(cm, "data", "GATEWAY_HTTP_ADDR"))
		}
		for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/healthz"} {
			if got := str(container, probe, "httpGet", "path"); got != path {
				t.Errorf("%s path = %q, want %s", probe, got, path)
			}
			if got := str(container, probe, "httpGet", "port"); got != port {
				t.Errorf("%s port = %q, not the HTTP port %q", probe, got, port)
			}
		}
		if got := str(named(t, objects, "Service", name), "spec", "ports", 0, "targetPort"); got != port {
			t.Errorf("the Service targets port %q, not the HTTP port", got)
		}
	})

	t.Run("hardening, replicas and draining", func(t *testing.T) {
		for check, holds := range map[string]bool{
			"pod runAsNonRoot":                         dig(pod, "spec", "securityContext", "runAsNonRoot") == true,
			"no service account token":                 dig(pod, "spec", "automountServiceAccountToken") == false,
			"no workload identity":                     podLabels["azure.workload.identity/use"] == nil,
			"container readOnlyRootFilesystem":         dig(container, "securityContext", "readOnlyRootFilesystem") == true,
			"container allowPrivilegeEscalation false": dig(container, "securityContext", "allowPrivilegeEscalation") == false,
			"container drops ALL capabilities":         dig(container, "securityContext", "capabilities", "drop", 0) == "ALL",
			"memory limit set":                         dig(container, "resources", "limits", "memory") != nil,
		} {
			if !holds {
				t.Errorf("%s: does not hold", check)
			}
		}
		replicas, _ := dig(deploy, "spec", "replicas").(int)
		if unavailable, _ := dig(named(t, objects, "PodDisruptionBudget", name), "spec", "maxUnavailable").(int); replicas < 2 || unavailable < 1 || unavailable >= replicas {
			t.Errorf("%d replicas with a PDB allowing %d unavailable: want one serving while another is evicted", replicas, unavailable)
		}
		drain, err := time.ParseDuration(str(cm, "data", "GATEWAY_DRAIN_TIMEOUT"))
		if err != nil || drain < gateway.MaxWait {
			t.Errorf("GATEWAY_DRAIN_TIMEOUT %q (%v): want at least %s, the longest Prefer: wait", str(cm, "data", "GATEWAY_DRAIN_TIMEOUT"), err, gateway.MaxWait)
		}
		preStop, _ := dig(container, "lifecycle", "preStop", "sleep", "seconds").(int)
		grace, _ := dig(pod, "spec", "terminationGracePeriodSeconds").(int)
		if time.Duration(grace)*time.Second <= drain+time.Duration(preStop)*time.Second {
			t.Errorf("terminationGracePeriodSeconds %d is not above GATEWAY_DRAIN_TIMEOUT %s and the preStop pause %ds", grace, drain, preStop)
		}
	})
}

// selects reports whether a label selector matches a pod's labels.
func selects(selector, labels map[string]any) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return len(selector) > 0
}
