package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	k8syaml "sigs.k8s.io/yaml"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/sluice-mesh/sluice/config"
)

const haDir = "deploy/kubernetes-ha"

// typedHA returns an empty typed object for the kinds the HA overlay adds, else the
// base's (newObject).
func typedHA(apiVersion, kind string) (any, *metav1.ObjectMeta) {
	switch apiVersion + "/" + kind {
	case "apps/v1/StatefulSet":
		o := &appsv1.StatefulSet{}
		return o, &o.ObjectMeta
	case "policy/v1/PodDisruptionBudget":
		o := &policyv1.PodDisruptionBudget{}
		return o, &o.ObjectMeta
	case "networking.k8s.io/v1/NetworkPolicy":
		o := &networkingv1.NetworkPolicy{}
		return o, &o.ObjectMeta
	}
	return newObject(apiVersion, kind)
}

func decodeHA(doc yamlDoc) (object, error) {
	var tm metav1.TypeMeta
	if err := k8syaml.Unmarshal(doc.data, &tm); err != nil {
		return object{}, fmt.Errorf("%s: %v", doc, err)
	}
	obj, meta := typedHA(tm.APIVersion, tm.Kind)
	if obj == nil {
		return object{}, fmt.Errorf("%s: unexpected apiVersion %q kind %q", doc, tm.APIVersion, tm.Kind)
	}
	if err := k8syaml.UnmarshalStrict(doc.data, obj); err != nil {
		return object{}, fmt.Errorf("%s: %s: %v", doc, tm.Kind, err)
	}
	return object{doc: doc, kind: tm.Kind, meta: meta, obj: obj}, nil
}

type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace"`
	Resources  []string `json:"resources"`
	Patches    []struct {
		Path string `json:"path"`
	} `json:"patches"`
}

func readKustomization(t *testing.T, dir string) kustomization {
	t.Helper()
	var k kustomization
	if err := k8syaml.UnmarshalStrict(readFile(t, path.Join(dir, "kustomization.yaml")), &k); err != nil {
		t.Fatalf("%s/kustomization.yaml: %v", dir, err)
	}
	if k.Kind != "Kustomization" || k.Namespace != namespace {
		t.Fatalf("%s/kustomization.yaml: kind %q namespace %q", dir, k.Kind, k.Namespace)
	}
	return k
}

func loadFile(t *testing.T, rel string) []object {
	t.Helper()
	var objs []object
	for _, doc := range splitYAML(rel, readFile(t, rel)) {
		o, err := decodeHA(doc)
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, o)
	}
	return objs
}

// buildHA does what `kubectl apply -k deploy/kubernetes-ha` renders: the base's
// resources, the overlay's, then the overlay's strategic merge patches (with the same
// library kustomize uses), each decoded strictly before and after.
func buildHA(t *testing.T) []object {
	t.Helper()
	k := readKustomization(t, haDir)
	var objs []object
	used := map[string]bool{"kustomization.yaml": true, "README.md": true}
	for _, r := range k.Resources {
		if r == "../kubernetes" {
			for _, f := range readKustomization(t, k8sDir).Resources {
				objs = append(objs, loadFile(t, path.Join(k8sDir, f))...)
			}
			continue
		}
		used[r] = true
		objs = append(objs, loadFile(t, path.Join(haDir, r))...)
	}
	if !slices.Contains(k.Resources, "../kubernetes") {
		t.Fatalf("the overlay does not build on the base: resources %v", k.Resources)
	}
	for _, p := range k.Patches {
		used[p.Path] = true
		rel := path.Join(haDir, p.Path)
		docs := splitYAML(rel, readFile(t, rel))
		if len(docs) != 1 {
			t.Fatalf("%s: %d documents; a patch file holds one", rel, len(docs))
		}
		objs = applyPatch(t, objs, docs[0])
	}
	files, err := filepath.Glob(filepath.Join(repoRoot, haDir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !used[filepath.Base(f)] {
			t.Errorf("%s/%s is neither a resource nor a patch of the overlay", haDir, filepath.Base(f))
		}
	}
	return objs
}

func applyPatch(t *testing.T, objs []object, doc yamlDoc) []object {
	t.Helper()
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
		Patch string `json:"$patch"`
	}
	if err := k8syaml.Unmarshal(doc.data, &head); err != nil {
		t.Fatalf("%s: %v", doc, err)
	}
	i := slices.IndexFunc(objs, func(o object) bool { return o.kind == head.Kind && o.meta.Name == head.Metadata.Name })
	if i < 0 {
		t.Fatalf("%s: patches %s %s, which the base does not have", doc, head.Kind, head.Metadata.Name)
	}
	if head.Patch == "delete" {
		return slices.Delete(objs, i, i+1)
	}
	fresh, _ := typedHA(head.APIVersion, head.Kind)
	if err := k8syaml.UnmarshalStrict(doc.data, fresh); err != nil {
		t.Fatalf("%s: the patch itself: %v", doc, err)
	}
	orig, err := json.Marshal(objs[i].obj)
	if err != nil {
		t.Fatal(err)
	}
	patch, err := k8syaml.YAMLToJSON(doc.data)
	if err != nil {
		t.Fatal(err)
	}
	schema, _ := typedHA(head.APIVersion, head.Kind)
	merged, err := strategicpatch.StrategicMergePatch(orig, patch, schema)
	if err != nil {
		t.Fatalf("%s: strategic merge: %v", doc, err)
	}
	out, meta := typedHA(head.APIVersion, head.Kind)
	dec := json.NewDecoder(bytes.NewReader(merged))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		t.Fatalf("%s: patched %s: %v", doc, head.Kind, err)
	}
	objs[i] = object{doc: doc, kind: head.Kind, meta: meta, obj: out}
	return objs
}

func findHA[T any](t *testing.T, objs []object, name string) *T {
	t.Helper()
	for _, o := range objs {
		if v, ok := o.obj.(*T); ok && o.meta.Name == name {
			return v
		}
	}
	var zero T
	t.Fatalf("no %T named %q in the HA overlay", zero, name)
	return nil
}

// antiAffinityPerNode reports whether pods with these labels must be on distinct nodes.
func antiAffinityPerNode(spec corev1.PodSpec, podLabels map[string]string) bool {
	a := spec.Affinity
	if a == nil || a.PodAntiAffinity == nil {
		return false
	}
	for _, term := range a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
		sel, err := metav1.LabelSelectorAsSelector(term.LabelSelector)
		if err == nil && !sel.Empty() && sel.Matches(labels.Set(podLabels)) && term.TopologyKey == "kubernetes.io/hostname" {
			return true
		}
	}
	return false
}

func checkPDB(t *testing.T, pdb *policyv1.PodDisruptionBudget, podLabels map[string]string, replicas int32) {
	t.Helper()
	sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(labels.Set(podLabels)) {
		t.Errorf("PodDisruptionBudget %s does not select the pods %v", pdb.Name, podLabels)
	}
	var down int32
	switch {
	case pdb.Spec.MinAvailable != nil:
		down = replicas - int32(pdb.Spec.MinAvailable.IntValue())
	case pdb.Spec.MaxUnavailable != nil:
		down = int32(pdb.Spec.MaxUnavailable.IntValue())
	}
	if down != 1 {
		t.Errorf("PodDisruptionBudget %s lets %d of %d pods go at once, want 1 (a quorum of 3 stays)", pdb.Name, down, replicas)
	}
}

// TestKubernetesHAOverlay builds deploy/kubernetes-ha on the base and checks three Sluice
// replicas, their disruption budget, the etcd StatefulSet, and the config that joins them.
func TestKubernetesHAOverlay(t *testing.T) {
	objs := buildHA(t)
	for _, o := range objs {
		if o.kind != "Namespace" && o.meta.Namespace != namespace {
			t.Errorf("%s: %s %s in namespace %q", o.doc, o.kind, o.meta.Name, o.meta.Namespace)
		}
		if o.meta.Labels["app.kubernetes.io/part-of"] != "sluice" && o.kind != "Namespace" {
			t.Errorf("%s: %s %s lacks app.kubernetes.io/part-of=sluice", o.doc, o.kind, o.meta.Name)
		}
		if o.kind == "PersistentVolumeClaim" && o.meta.Name == "sluice-state" {
			t.Error("the base's state claim is still there: with etcd no replica keeps state on a volume")
		}
	}

	d := findHA[appsv1.Deployment](t, objs, "sluice")
	checkPod(t, d)
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
		t.Errorf("sluice replicas %v, want 3", d.Spec.Replicas)
	}
	if s := d.Spec.Strategy; s.Type != appsv1.RollingUpdateDeploymentStrategyType || s.RollingUpdate == nil ||
		s.RollingUpdate.MaxUnavailable.IntValue() != 1 || s.RollingUpdate.MaxSurge.IntValue() != 0 {
		t.Errorf("strategy %+v, want RollingUpdate one replica at a time", s)
	}
	if !antiAffinityPerNode(d.Spec.Template.Spec, d.Spec.Template.Labels) {
		t.Error("sluice replicas may share a node: want required pod anti-affinity on kubernetes.io/hostname")
	}
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.PersistentVolumeClaim != nil {
			t.Errorf("volume %s is a claim; three replicas cannot share a ReadWriteOnce volume", v.Name)
		}
	}
	checkPDB(t, findHA[policyv1.PodDisruptionBudget](t, objs, "sluice"), d.Spec.Template.Labels, *d.Spec.Replicas)

	// The etcd StatefulSet, its headless Service and its budget.
	s := findHA[appsv1.StatefulSet](t, objs, "etcd")
	pod := &appsv1.Deployment{ObjectMeta: s.ObjectMeta, Spec: appsv1.DeploymentSpec{Selector: s.Spec.Selector, Template: s.Spec.Template}}
	for _, c := range s.Spec.VolumeClaimTemplates {
		pod.Spec.Template.Spec.Volumes = append(pod.Spec.Template.Spec.Volumes, corev1.Volume{Name: c.Name})
	}
	checkPod(t, pod)
	if s.Spec.Replicas == nil || *s.Spec.Replicas != 3 || s.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("etcd: replicas %v, podManagementPolicy %q; want 3, Parallel", s.Spec.Replicas, s.Spec.PodManagementPolicy)
	}
	if !antiAffinityPerNode(s.Spec.Template.Spec, s.Spec.Template.Labels) {
		t.Error("etcd members may share a node")
	}
	checkPDB(t, findHA[policyv1.PodDisruptionBudget](t, objs, "etcd"), s.Spec.Template.Labels, *s.Spec.Replicas)
	svc := findHA[corev1.Service](t, objs, s.Spec.ServiceName)
	if svc.Spec.ClusterIP != corev1.ClusterIPNone || !svc.Spec.PublishNotReadyAddresses {
		t.Errorf("Service %s must be headless and publish not-ready members (they find each other before the quorum)", svc.Name)
	}
	checkService(t, svc, pod)
	c := s.Spec.Template.Spec.Containers[0]
	ports := containerPorts(pod)
	flags := map[string]string{}
	for _, a := range c.Args {
		k, v, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") || !ok {
			t.Fatalf("etcd arg %q is not --flag=value", a)
		}
		flags[k] = v
	}
	if len(c.Env) != 1 || c.Env[0].Name != "POD_NAME" || c.Env[0].ValueFrom == nil || c.Env[0].ValueFrom.FieldRef.FieldPath != "metadata.name" {
		t.Errorf("etcd env %+v, want POD_NAME from metadata.name", c.Env)
	}
	dns := func(member string) string { return member + "." + svc.Name + "." + namespace + ".svc" }
	var initial []string
	for i := 0; i < int(*s.Spec.Replicas); i++ {
		m := s.Name + "-" + strconv.Itoa(i)
		initial = append(initial, m+"=http://"+dns(m)+":"+strconv.Itoa(int(ports["peer"])))
	}
	for k, want := range map[string]string{
		"name":                        "$(POD_NAME)",
		"initial-cluster":             strings.Join(initial, ","),
		"advertise-client-urls":       "http://" + dns("$(POD_NAME)") + ":" + strconv.Itoa(int(ports["client"])),
		"initial-advertise-peer-urls": "http://" + dns("$(POD_NAME)") + ":" + strconv.Itoa(int(ports["peer"])),
		"listen-client-urls":          "http://0.0.0.0:" + strconv.Itoa(int(ports["client"])),
		"listen-peer-urls":            "http://0.0.0.0:" + strconv.Itoa(int(ports["peer"])),
		"listen-metrics-urls":         "http://0.0.0.0:" + strconv.Itoa(int(ports["metrics"])),
		"initial-cluster-state":       "new",
	} {
		if flags[k] != want {
			t.Errorf("etcd --%s=%q, want %q", k, flags[k], want)
		}
	}
	if m := c.VolumeMounts; len(m) != 1 || !strings.HasPrefix(flags["data-dir"], m[0].MountPath+"/") || m[0].Name != s.Spec.VolumeClaimTemplates[0].Name {
		t.Errorf("etcd data dir %q is not on its claim's mount %+v", flags["data-dir"], m)
	}

	// Only Sluice's pods reach the client port.
	np := findHA[networkingv1.NetworkPolicy](t, objs, "etcd")
	if sel, _ := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector); !sel.Matches(labels.Set(s.Spec.Template.Labels)) {
		t.Error("the NetworkPolicy does not cover the etcd pods")
	}
	for _, rule := range np.Spec.Ingress {
		for _, p := range rule.Ports {
			if p.Port.String() != "client" {
				continue
			}
			for _, from := range rule.From {
				sel, _ := metav1.LabelSelectorAsSelector(from.PodSelector)
				if from.PodSelector == nil || !(sel.Matches(labels.Set(d.Spec.Template.Labels)) || sel.Matches(labels.Set(s.Spec.Template.Labels))) {
					t.Errorf("the client port admits %+v, not only Sluice and etcd pods", from)
				}
			}
			if len(rule.From) == 0 {
				t.Error("the client port is open to every pod")
			}
		}
	}

	// The config: the base's, with the ControlPlane's state in this etcd.
	text := findHA[corev1.ConfigMap](t, objs, "sluice-config").Data["sluice.yaml"]
	cfg, ds := config.LoadBytes("sluice.yaml", []byte(text))
	if ds.HasErrors() {
		t.Fatalf("HA config: %s", ds)
	}
	var wantEndpoints []string
	for i := 0; i < int(*s.Spec.Replicas); i++ {
		wantEndpoints = append(wantEndpoints, "http://"+dns(s.Name+"-"+strconv.Itoa(i))+":"+strconv.Itoa(int(ports["client"])))
	}
	if e := cfg.ControlPlane.Etcd; e == nil || !slices.Equal(e.Endpoints, wantEndpoints) {
		t.Errorf("store.etcd %+v, want the endpoints %v", e, wantEndpoints)
	}
	ha, base := parseSluiceConfig(t, text), parseSluiceConfig(t, findConfigMap(t, loadObjects(t), "sluice-config")["sluice.yaml"])
	if got, want := otherDocs(t, ha), otherDocs(t, base); !reflect.DeepEqual(got, want) {
		t.Errorf("the HA config's documents other than the ControlPlane differ from ../sluice-config.yaml's; copy them over:\nHA:   %v\nbase: %v", got, want)
	}
	hcp, bcp := ha.controlPlane(t), base.controlPlane(t)
	if hcp.Admin != bcp.Admin || !reflect.DeepEqual(hcp.XDS, bcp.XDS) {
		t.Errorf("HA ControlPlane admin/xds %+v %+v differ from the base's %+v %+v", hcp.Admin, hcp.XDS, bcp.Admin, bcp.XDS)
	}
}

// otherDocs returns every document but the ControlPlane, decoded.
func otherDocs(t *testing.T, c sluiceConfig) []any {
	t.Helper()
	var out []any
	for _, d := range c.docs {
		var h struct {
			Kind string `yaml:"kind"`
		}
		if d.Decode(&h) == nil && h.Kind == "ControlPlane" {
			continue
		}
		var v any
		if err := d.Decode(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

// TestKubernetesHAEtcdRuns starts three real etcd members with the StatefulSet's own
// flags (pod DNS names and ports moved to loopback), checks the probe path on the metrics
// port, and has a Sluice replica on the overlay's config lead and write through them.
func TestKubernetesHAEtcdRuns(t *testing.T) {
	objs := buildHA(t)
	s := findHA[appsv1.StatefulSet](t, objs, "etcd")
	svc := findHA[corev1.Service](t, objs, s.Spec.ServiceName)
	c := s.Spec.Template.Spec.Containers[0]
	n := int(*s.Spec.Replicas)
	type addrs struct{ client, peer, metrics string }
	a := make([]addrs, n)
	for i := range a {
		a[i] = addrs{freeAddr(t), freeAddr(t), freeAddr(t)}
	}
	var pairs []string
	for i := range a {
		host := fmt.Sprintf("%s-%d.%s.%s.svc", s.Name, i, svc.Name, namespace)
		pairs = append(pairs, host+":2379", a[i].client, host+":2380", a[i].peer)
	}
	var members []etcdProc
	for i := range a {
		member := fmt.Sprintf("%s-%d", s.Name, i)
		local := strings.NewReplacer(append([]string{
			"0.0.0.0:2379", a[i].client, "0.0.0.0:2380", a[i].peer, "0.0.0.0:2381", a[i].metrics,
			"/var/lib/etcd", t.TempDir(),
		}, pairs...)...)
		var args []string
		for _, arg := range c.Args {
			args = append(args, local.Replace(strings.ReplaceAll(arg, "$(POD_NAME)", member)))
		}
		// The image's etcd is 3.5; Debian's 3.4 takes the same flags.
		members = append(members, etcdProc{args: args, health: "http://" + a[i].metrics + c.ReadinessProbe.HTTPGet.Path})
	}
	startEtcdMembers(t, members, http.DefaultClient)
	for i := range a {
		resp, err := http.Get("http://" + a[i].metrics + c.LivenessProbe.HTTPGet.Path)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("liveness probe path %s: %v %v", c.LivenessProbe.HTTPGet.Path, resp, err)
		} else {
			resp.Body.Close()
		}
	}
	text := findHA[corev1.ConfigMap](t, objs, "sluice-config").Data["sluice.yaml"]
	leadAndWrite(t, strings.NewReplacer(pairs...).Replace(text))
}

// TestKubernetesHAKustomize renders the overlay with kustomize itself (its krusty API,
// which `kubectl apply -k` embeds) and checks it gives exactly what buildHA gives: the
// checks above hold for what would really be applied.
func TestKubernetesHAKustomize(t *testing.T) {
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), filepath.Join(repoRoot, haDir))
	if err != nil {
		t.Fatalf("kustomize build %s: %v", haDir, err)
	}
	out, err := res.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	rendered := map[string]any{}
	for _, doc := range splitYAML("kustomize build", out) {
		o, err := decodeHA(doc)
		if err != nil {
			t.Fatal(err)
		}
		rendered[o.kind+"/"+o.meta.Name] = o.obj
	}
	built := map[string]any{}
	for _, o := range buildHA(t) {
		built[o.kind+"/"+o.meta.Name] = o.obj
	}
	for k, b := range built {
		r, ok := rendered[k]
		if !ok {
			t.Errorf("%s: in buildHA, not in kustomize's output", k)
			continue
		}
		// kustomize may put a patched list item first; a pod's volumes have no order.
		byName := cmpopts.SortSlices(func(a, b corev1.Volume) bool { return a.Name < b.Name })
		if d := cmp.Diff(b, r, byName); d != "" {
			t.Errorf("%s differs (-buildHA +kustomize):\n%s", k, d)
		}
	}
	for k := range rendered {
		if _, ok := built[k]; !ok {
			t.Errorf("%s: in kustomize's output, not in buildHA", k)
		}
	}
}
