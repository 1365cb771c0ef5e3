package discovery

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	k8syaml "sigs.k8s.io/yaml"

	"github.com/sluice-mesh/sluice/internal/testenv"
	"github.com/sluice-mesh/sluice/model"
)

// TestKubernetesDiscoveryAgainstARealAPIServer runs the Manager, with the real client
// (a kubeconfig holding a ServiceAccount token), against kube-apiserver on etcd, with
// RBAC on and the Role and RoleBinding of deploy/kubernetes/rbac.yaml: slices are
// created, scaled, rolled and deleted; a namespace the Role does not cover is refused,
// and the status says what to grant.
func TestKubernetesDiscoveryAgainstARealAPIServer(t *testing.T) {
	k := testenv.StartKubeAPIServer(t)
	t.Logf("etcd + kube-apiserver %s ready in %s", testenv.KubeAPIServerVersion, k.StartTime.Round(time.Millisecond))
	admin := kubeClient(t, k.Kubeconfig(t, k.AdminToken))
	ctx := context.Background()
	for _, ns := range []string{"sluice", "other"} {
		if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := admin.CoreV1().ServiceAccounts("sluice").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "sluice"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	applyShippedRBAC(t, admin)
	tr, err := admin.CoreV1().ServiceAccounts("sluice").CreateToken(ctx, "sluice", &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := k.Kubeconfig(t, tr.Status.Token)

	stable := admin.DiscoveryV1().EndpointSlices("sluice")
	if _, err := stable.Create(ctx, slice("sluice", "backend-api-stable", "stable-a", httpPort, ep{ip: "10.0.0.1", ready: yes}, ep{ip: "10.0.0.2", ready: yes}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := stable.Create(ctx, slice("sluice", "backend-api-canary", "canary-a", httpPort, ep{ip: "10.0.1.1", ready: yes}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	h := newHarness(t, Options{}) // the real client: DefaultKubeClient
	h.m.Update(&model.Config{
		ControlPlane: model.ControlPlane{Kubernetes: model.KubernetesClient{Kubeconfig: kubeconfig}},
		Clusters: []model.Cluster{
			{Name: "stable", Kubernetes: &model.KubernetesDiscovery{Service: "backend-api-stable", Namespace: "sluice", PortName: "http"}},
			{Name: "canary", Kubernetes: &model.KubernetesDiscovery{Service: "backend-api-canary", Namespace: "sluice", PortNumber: 8080}},
			{Name: "elsewhere", Kubernetes: &model.KubernetesDiscovery{Service: "api", Namespace: "other"}},
		},
	})
	h.pub.waitSet(t, "stable", eps("10.0.0.1:8080", "10.0.0.2:8080"))
	h.pub.waitSet(t, "canary", eps("10.0.1.1:8080"))

	// Least privilege: the Role covers namespace sluice only.
	st := h.waitStatus(t, "elsewhere", "Kubernetes", func(s Status) bool { return s.Error != "" })
	if !strings.Contains(st.ErrorDetail, "forbidden: grant get, list and watch on discovery.k8s.io endpointslices in namespace other") {
		t.Errorf("namespace other: %s (%s)", st, st.ErrorDetail)
	}

	// Scale up, roll the pods, drain the old ones, remove them: each step is seen.
	step := func(what string, s *discoveryv1.EndpointSlice, want []model.Endpoint) {
		t.Helper()
		start := time.Now()
		if _, err := stable.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		h.pub.waitSet(t, "stable", want)
		t.Logf("%s → published after %s", what, time.Since(start).Round(time.Millisecond))
	}
	step("scale-up", slice("sluice", "backend-api-stable", "stable-a", httpPort,
		ep{ip: "10.0.0.1", ready: yes}, ep{ip: "10.0.0.2", ready: yes}, ep{ip: "10.0.0.3", ready: yes}),
		eps("10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"))
	step("rollout: new pod ready, old pod terminating", slice("sluice", "backend-api-stable", "stable-a", httpPort,
		ep{ip: "10.0.0.1", ready: no, serving: yes, terminating: yes}, ep{ip: "10.0.0.2", ready: yes}, ep{ip: "10.0.0.3", ready: yes},
		ep{ip: "10.0.0.4", ready: yes}, ep{ip: "10.0.0.5", ready: no, serving: no}),
		[]model.Endpoint{{Address: "10.0.0.1:8080", Weight: 1, Draining: true}, eps("10.0.0.2:8080")[0], eps("10.0.0.3:8080")[0], eps("10.0.0.4:8080")[0]})
	step("old pod gone", slice("sluice", "backend-api-stable", "stable-a", httpPort,
		ep{ip: "10.0.0.2", ready: yes}, ep{ip: "10.0.0.3", ready: yes}, ep{ip: "10.0.0.4", ready: yes}),
		eps("10.0.0.2:8080", "10.0.0.3:8080", "10.0.0.4:8080"))

	// The slice deleted: an empty answer keeps the last set and says so.
	if err := stable.Delete(ctx, "stable-a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	st = h.waitStatus(t, "stable", "Kubernetes", func(s Status) bool { return s.Error == "empty answer" })
	if got, _ := h.m.Endpoints("stable"); !equal(got, eps("10.0.0.2:8080", "10.0.0.3:8080", "10.0.0.4:8080")) {
		t.Errorf("deleting every slice emptied the cluster: %v", got)
	}
	t.Logf("status: %s", st)
}

func kubeClient(t *testing.T, kubeconfig string) *kubernetes.Clientset {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// applyShippedRBAC creates the Role and RoleBinding of deploy/kubernetes/rbac.yaml.
func applyShippedRBAC(t *testing.T, c *kubernetes.Clientset) {
	t.Helper()
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "deploy", "kubernetes", "rbac.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	n := 0
	for _, doc := range strings.Split(string(b), "\n---\n") {
		var tm metav1.TypeMeta
		if err := k8syaml.Unmarshal([]byte(doc), &tm); err != nil {
			t.Fatal(err)
		}
		switch tm.Kind {
		case "Role":
			var r rbacv1.Role
			if err := k8syaml.UnmarshalStrict([]byte(doc), &r); err != nil {
				t.Fatal(err)
			}
			_, err = c.RbacV1().Roles(r.Namespace).Create(ctx, &r, metav1.CreateOptions{})
		case "RoleBinding":
			var r rbacv1.RoleBinding
			if err := k8syaml.UnmarshalStrict([]byte(doc), &r); err != nil {
				t.Fatal(err)
			}
			_, err = c.RbacV1().RoleBindings(r.Namespace).Create(ctx, &r, metav1.CreateOptions{})
		default:
			t.Fatalf("rbac.yaml: unexpected kind %q", tm.Kind)
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 2 {
		t.Fatalf("rbac.yaml holds %d objects, want a Role and a RoleBinding", n)
	}
}
