package deploy

import (
	"os"
	"path/filepath"
	"testing"
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

	deploy := only(t, objects, "Deployment")
	pod := dig(deploy, "spec", "template")
	podLabels, _ := dig(pod, "metadata", "labels").(map[string]any)
	container := dig(pod, "spec", "containers", 0)

	t.Run("selectors match the pod labels", func(t *testing.T) {
		for kind, path := range map[string][]any{
			"Deployment":          {"spec", "selector", "matchLabels"},
			"PodDisruptionBudget": {"spec", "selector", "matchLabels"},
			"Service":             {"spec", "selector"},
		} {
			sel, _ := dig(only(t, objects, kind), path...).(map[string]any)
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
		cm := only(t, objects, "ConfigMap")
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
		if got := str(only(t, objects, "Service"), "spec", "ports", 0, "targetPort"); got != str(container, "ports", 0, "name") {
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
