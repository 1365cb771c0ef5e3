package deploy

import (
	"fmt"
	"net"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	k8syaml "sigs.k8s.io/yaml"
)

const (
	k8sDir    = "deploy/kubernetes"
	namespace = "sluice"
)

// object is one decoded Kubernetes manifest.
type object struct {
	doc  yamlDoc
	kind string
	meta *metav1.ObjectMeta
	obj  any
}

// newObject returns an empty typed object for apiVersion/kind, or nil for kinds the
// manifests are not expected to hold.
func newObject(apiVersion, kind string) (any, *metav1.ObjectMeta) {
	switch apiVersion + "/" + kind {
	case "v1/Namespace":
		o := &corev1.Namespace{}
		return o, &o.ObjectMeta
	case "v1/ConfigMap":
		o := &corev1.ConfigMap{}
		return o, &o.ObjectMeta
	case "v1/Service":
		o := &corev1.Service{}
		return o, &o.ObjectMeta
	case "v1/ServiceAccount":
		o := &corev1.ServiceAccount{}
		return o, &o.ObjectMeta
	case "v1/PersistentVolumeClaim":
		o := &corev1.PersistentVolumeClaim{}
		return o, &o.ObjectMeta
	case "apps/v1/Deployment":
		o := &appsv1.Deployment{}
		return o, &o.ObjectMeta
	case "rbac.authorization.k8s.io/v1/Role":
		o := &rbacv1.Role{}
		return o, &o.ObjectMeta
	case "rbac.authorization.k8s.io/v1/RoleBinding":
		o := &rbacv1.RoleBinding{}
		return o, &o.ObjectMeta
	}
	return nil, nil
}

// decodeStrict decodes one manifest into its k8s.io/api type, refusing unknown or
// duplicate fields and values of the wrong type.
func decodeStrict(doc yamlDoc) (object, error) {
	var tm metav1.TypeMeta
	if err := k8syaml.Unmarshal(doc.data, &tm); err != nil {
		return object{}, fmt.Errorf("%s: %v", doc, err)
	}
	obj, meta := newObject(tm.APIVersion, tm.Kind)
	if obj == nil {
		return object{}, fmt.Errorf("%s: unexpected apiVersion %q kind %q", doc, tm.APIVersion, tm.Kind)
	}
	if err := k8syaml.UnmarshalStrict(doc.data, obj); err != nil {
		return object{}, fmt.Errorf("%s: %s: %v", doc, tm.Kind, err)
	}
	return object{doc: doc, kind: tm.Kind, meta: meta, obj: obj}, nil
}

// manifestFiles returns the YAML files of deploy/kubernetes except kustomization.yaml.
func manifestFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot, k8sDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" {
			out = append(out, b)
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		t.Fatal("no manifests in " + k8sDir)
	}
	return out
}

func loadObjects(t *testing.T) []object {
	t.Helper()
	var objs []object
	for _, f := range manifestFiles(t) {
		rel := path.Join(k8sDir, f)
		for _, doc := range splitYAML(rel, readFile(t, rel)) {
			o, err := decodeStrict(doc)
			if err != nil {
				t.Error(err)
				continue
			}
			objs = append(objs, o)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return objs
}

func find[T any](t *testing.T, objs []object, name string) *T {
	t.Helper()
	for _, o := range objs {
		if v, ok := o.obj.(*T); ok && o.meta.Name == name {
			return v
		}
	}
	var zero T
	t.Fatalf("no %T named %q in %s", zero, name, k8sDir)
	return nil
}

func TestStrictDecoderRefusesUnknownFields(t *testing.T) {
	// The decoder under test must catch typos, or every other check here is weaker than it looks.
	for _, bad := range []string{
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replica: 1\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  ports: [{port: 80, targetPort: http, protocl: TCP}]\n",
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\ndata: {c: d}\n",
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      containers: [{name: a, resources: {requests: {cpu: lots}}}]\n",
		"apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n",
		"apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: x}\nrules: [{apiGroups: [\"\"], resource: [pods], verbs: [get]}]\n",
		"apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: x}\nroleRef: {kind: Role, name: x}\nsubjects: [{kind: ServiceAccount, name: x, namspace: y}]\n",
		"apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: x}\n",
	} {
		if _, err := decodeStrict(yamlDoc{file: "bad.yaml", line: 1, data: []byte(bad)}); err == nil {
			t.Errorf("accepted:\n%s", bad)
		}
	}
}

func TestKubernetesManifestsDecodeStrictly(t *testing.T) {
	objs := loadObjects(t)
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.kind]++
		if o.kind != "Namespace" && o.meta.Namespace != namespace {
			t.Errorf("%s: %s %s in namespace %q, want %q", o.doc, o.kind, o.meta.Name, o.meta.Namespace, namespace)
		}
		if o.meta.Labels["app.kubernetes.io/part-of"] != "sluice" {
			t.Errorf("%s: %s %s lacks label app.kubernetes.io/part-of=sluice", o.doc, o.kind, o.meta.Name)
		}
	}
	for kind, want := range map[string]int{"Namespace": 1, "Deployment": 2, "Service": 2, "ConfigMap": 2, "ServiceAccount": 1, "Role": 1, "RoleBinding": 1} {
		if kinds[kind] < want {
			t.Errorf("%d %s manifests, want at least %d", kinds[kind], kind, want)
		}
	}
	find[corev1.Namespace](t, objs, namespace)
}

func TestKustomizationListsEveryManifest(t *testing.T) {
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Namespace  string   `json:"namespace"`
		Resources  []string `json:"resources"`
	}
	if err := k8syaml.UnmarshalStrict(readFile(t, path.Join(k8sDir, "kustomization.yaml")), &k); err != nil {
		t.Fatal(err)
	}
	got := slices.Clone(k.Resources)
	sort.Strings(got)
	if want := manifestFiles(t); !reflect.DeepEqual(got, want) {
		t.Errorf("kustomization resources %v, want every manifest %v", got, want)
	}
	if k.Kind != "Kustomization" || k.Namespace != namespace {
		t.Errorf("kustomization kind %q namespace %q", k.Kind, k.Namespace)
	}
}

// checkPod applies the rules every workload here follows.
func checkPod(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	name := "Deployment " + d.Name
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("%s: selector %v does not match its pod labels %v (%v)", name, d.Spec.Selector, d.Spec.Template.Labels, err)
	}
	ps := d.Spec.Template.Spec
	psc := ps.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("%s: pod securityContext must set runAsNonRoot and a non-zero runAsUser: %+v", name, psc)
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: want seccompProfile RuntimeDefault (namespace enforces restricted)", name)
	}
	if d.Name == "sluice" {
		// Kubernetes discovery authenticates with the ServiceAccount's token.
		if ps.AutomountServiceAccountToken == nil || !*ps.AutomountServiceAccountToken || ps.ServiceAccountName != "sluice" {
			t.Errorf("%s: must run as ServiceAccount sluice with its token mounted (in-cluster config for discovery)", name)
		}
	} else if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
		t.Errorf("%s: automountServiceAccountToken should be false (it does not talk to the API server)", name)
	}
	anns := d.Spec.Template.Annotations
	if anns["prometheus.io/scrape"] != "true" || anns["prometheus.io/path"] == "" {
		t.Errorf("%s: missing Prometheus scrape annotations: %v", name, anns)
	}
	volumes := map[string]bool{}
	for _, v := range ps.Volumes {
		volumes[v.Name] = true
	}
	if len(ps.Containers) == 0 {
		t.Fatalf("%s: no containers", name)
	}
	scrapePortFound := false
	for _, c := range ps.Containers {
		cn := name + " container " + c.Name
		sc := c.SecurityContext
		switch {
		case sc == nil:
			t.Errorf("%s: no securityContext", cn)
		default:
			if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
				t.Errorf("%s: runAsNonRoot not set", cn)
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				t.Errorf("%s: readOnlyRootFilesystem not set", cn)
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("%s: allowPrivilegeEscalation must be false", cn)
			}
			if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
				t.Errorf("%s: capabilities must drop ALL and add none: %+v", cn, sc.Capabilities)
			}
		}
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if q, ok := c.Resources.Requests[r]; !ok || q.IsZero() {
				t.Errorf("%s: no %s request", cn, r)
			}
		}
		if q, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok || q.Cmp(c.Resources.Requests[corev1.ResourceMemory]) < 0 {
			t.Errorf("%s: memory limit missing or below the request", cn)
		}
		ports := map[string]int32{}
		for _, p := range c.Ports {
			ports[p.Name] = p.ContainerPort
			if strconv.Itoa(int(p.ContainerPort)) == anns["prometheus.io/port"] {
				scrapePortFound = true
			}
		}
		for pname, pr := range map[string]*corev1.Probe{"readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe} {
			if pr == nil || pr.HTTPGet == nil {
				t.Errorf("%s: no HTTP %s", cn, pname)
				continue
			}
			if _, ok := resolvePort(pr.HTTPGet.Port, ports); !ok {
				t.Errorf("%s: %s port %s is not a container port", cn, pname, pr.HTTPGet.Port.String())
			}
		}
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] {
				t.Errorf("%s: mounts undefined volume %q", cn, m.Name)
			}
		}
	}
	if !scrapePortFound {
		t.Errorf("%s: prometheus.io/port %q is not a container port", name, anns["prometheus.io/port"])
	}
}

func resolvePort(p intstr.IntOrString, ports map[string]int32) (int32, bool) {
	if p.Type == intstr.String {
		v, ok := ports[p.StrVal]
		return v, ok
	}
	for _, v := range ports {
		if v == p.IntVal {
			return v, true
		}
	}
	return 0, false
}

func containerPorts(d *appsv1.Deployment) map[string]int32 {
	ports := map[string]int32{}
	for _, c := range d.Spec.Template.Spec.Containers {
		for _, p := range c.Ports {
			ports[p.Name] = p.ContainerPort
		}
	}
	return ports
}

// checkService checks that svc selects d's pods and targets its named ports.
func checkService(t *testing.T, svc *corev1.Service, d *appsv1.Deployment) {
	t.Helper()
	if len(svc.Spec.Selector) == 0 {
		t.Errorf("Service %s has no selector", svc.Name)
	}
	for k, v := range svc.Spec.Selector {
		if d.Spec.Template.Labels[k] != v {
			t.Errorf("Service %s selector %s=%s does not match Deployment %s's pods", svc.Name, k, v, d.Name)
		}
	}
	ports := containerPorts(d)
	for _, p := range svc.Spec.Ports {
		if _, ok := resolvePort(p.TargetPort, ports); !ok {
			t.Errorf("Service %s port %s targets %s, not a port of Deployment %s", svc.Name, p.Name, p.TargetPort.String(), d.Name)
		}
	}
}

func servicePort(t *testing.T, svc *corev1.Service, name string) int32 {
	t.Helper()
	for _, p := range svc.Spec.Ports {
		if p.Name == name {
			return p.Port
		}
	}
	t.Fatalf("Service %s has no port %q", svc.Name, name)
	return 0
}

func TestSluiceDeployment(t *testing.T) {
	objs := loadObjects(t)
	d := find[appsv1.Deployment](t, objs, "sluice")
	checkPod(t, d)
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 || d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("sluice must run as exactly one replica with the Recreate strategy (one writer of weights)")
	}
	c := d.Spec.Template.Spec.Containers[0]
	if c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("probes: readiness %s liveness %s, want /readyz and /healthz", c.ReadinessProbe.HTTPGet.Path, c.LivenessProbe.HTTPGet.Path)
	}
	if len(c.Args) < 3 || c.Args[0] != "serve" || c.Args[1] != "-f" {
		t.Fatalf("args %v, want serve -f FILE", c.Args)
	}
	ports := containerPorts(d)
	if ports["xds"] != 18000 || ports["admin"] != 9900 {
		t.Errorf("container ports %v, want xds 18000 and admin 9900", ports)
	}
	if a := d.Spec.Template.Annotations["prometheus.io/port"]; a != "9900" {
		t.Errorf("scrape port %s, want the admin port 9900", a)
	}

	svc := find[corev1.Service](t, objs, "sluice")
	checkService(t, svc, d)
	if servicePort(t, svc, "xds") != 18000 || servicePort(t, svc, "admin") != 9900 {
		t.Errorf("sluice Service must expose xds 18000 and admin 9900")
	}

	// The volumes the config relies on.
	mounts := map[string]string{} // volume name → mount path
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	var cfgMap, claim, secret string
	for _, v := range d.Spec.Template.Spec.Volumes {
		switch {
		case v.ConfigMap != nil:
			cfgMap = v.ConfigMap.Name
			if mounts[v.Name] != path.Dir(c.Args[2]) {
				t.Errorf("config file %s is not in the ConfigMap mount %s", c.Args[2], mounts[v.Name])
			}
		case v.PersistentVolumeClaim != nil:
			claim = v.PersistentVolumeClaim.ClaimName
		case v.Secret != nil:
			secret = v.Secret.SecretName
		}
	}
	cm := find[corev1.ConfigMap](t, objs, cfgMap)
	find[corev1.PersistentVolumeClaim](t, objs, claim)
	if secret == "" {
		t.Error("no Secret volume for the admin token")
	}
	cfg := parseSluiceConfig(t, cm.Data[path.Base(c.Args[2])])

	// The config agrees with the Deployment.
	cp := cfg.controlPlane(t)
	if port(t, cp.Admin.Address) != ports["admin"] {
		t.Errorf("config admin address %s, container port %d", cp.Admin.Address, ports["admin"])
	}
	if cp.XDS == nil || port(t, cp.XDS.Address) != ports["xds"] {
		t.Errorf("config xds %+v, container port %d", cp.XDS, ports["xds"])
	}
	if h := host(t, cp.Admin.Address); h != "0.0.0.0" && h != "" {
		t.Errorf("admin must listen on every interface in a pod (probes come from the node): %s", cp.Admin.Address)
	}
	if cp.Admin.TokenFile == "" || path.Dir(cp.Admin.TokenFile) != mounts[volumeOf(d, secret)] {
		t.Errorf("admin tokenFile %q must be in the Secret mount %q (off loopback a token is required)", cp.Admin.TokenFile, mounts[volumeOf(d, secret)])
	}
	if cp.StateDir != mounts[volumeOf(d, claim)] {
		t.Errorf("stateDir %q is not the state volume mount %q", cp.StateDir, mounts[volumeOf(d, claim)])
	}
	cfg.checkReferences(t)

	envoy := find[appsv1.Deployment](t, objs, "envoy")
	for _, l := range cfg.docsOf("Listener") {
		var spec struct{ Address string }
		decodeSpec(t, l, &spec)
		if p := port(t, spec.Address); containerPorts(envoy)["http"] != p {
			t.Errorf("Listener address %s: the Envoy container's http port is %d", spec.Address, containerPorts(envoy)["http"])
		}
	}
}

func volumeOf(d *appsv1.Deployment, source string) string {
	for _, v := range d.Spec.Template.Spec.Volumes {
		if (v.Secret != nil && v.Secret.SecretName == source) ||
			(v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == source) ||
			(v.ConfigMap != nil && v.ConfigMap.Name == source) {
			return v.Name
		}
	}
	return ""
}

func port(t *testing.T, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return int32(n)
}

func host(t *testing.T, addr string) string {
	t.Helper()
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return h
}

// sluiceConfig is a Sluice configuration as YAML documents (the config package's own
// checks run in TestConfigsValidate through `sluice validate` when it exists).
type sluiceConfig struct{ docs []*yaml.Node }

type cpSpec struct {
	Admin struct {
		Address   string `yaml:"address"`
		TokenFile string `yaml:"tokenFile"`
	} `yaml:"admin"`
	XDS *struct {
		Address string `yaml:"address"`
	} `yaml:"xds"`
	StateDir string `yaml:"stateDir"`
}

func parseSluiceConfig(t *testing.T, text string) sluiceConfig {
	t.Helper()
	if strings.TrimSpace(text) == "" {
		t.Fatal("empty Sluice config")
	}
	dec := yaml.NewDecoder(strings.NewReader(text))
	var c sluiceConfig
	for {
		var n yaml.Node
		if err := dec.Decode(&n); err != nil {
			if err.Error() == "EOF" {
				break
			}
			t.Fatalf("sluice config: %v", err)
		}
		c.docs = append(c.docs, &n)
	}
	return c
}

func (c sluiceConfig) docsOf(kind string) []*yaml.Node {
	var out []*yaml.Node
	for _, d := range c.docs {
		var h struct {
			Kind string `yaml:"kind"`
		}
		if d.Decode(&h) == nil && h.Kind == kind {
			out = append(out, d)
		}
	}
	return out
}

func decodeSpec(t *testing.T, doc *yaml.Node, spec any) {
	t.Helper()
	var wrapper struct {
		Spec yaml.Node `yaml:"spec"`
	}
	if err := doc.Decode(&wrapper); err != nil {
		t.Fatal(err)
	}
	if err := wrapper.Spec.Decode(spec); err != nil {
		t.Fatal(err)
	}
}

func name(t *testing.T, doc *yaml.Node) string {
	var h struct {
		Metadata struct {
			Name string `yaml:"name"`
		} `yaml:"metadata"`
	}
	if err := doc.Decode(&h); err != nil {
		t.Fatal(err)
	}
	return h.Metadata.Name
}

func (c sluiceConfig) controlPlane(t *testing.T) cpSpec {
	t.Helper()
	cps := c.docsOf("ControlPlane")
	if len(cps) != 1 {
		t.Fatalf("%d ControlPlane documents, want 1", len(cps))
	}
	var s cpSpec
	decodeSpec(t, cps[0], &s)
	return s
}

// checkReferences checks that routes and rollouts name clusters, listeners and templates
// that the config declares.
func (c sluiceConfig) checkReferences(t *testing.T) {
	t.Helper()
	names := func(kind string) map[string]bool {
		m := map[string]bool{}
		for _, d := range c.docsOf(kind) {
			m[name(t, d)] = true
		}
		return m
	}
	clusters, listeners, templates := names("Cluster"), names("Listener"), names("AnalysisTemplate")
	if len(clusters) < 2 || len(listeners) < 1 || len(c.docsOf("Rollout")) < 1 {
		t.Errorf("config should declare clusters, a listener and a rollout")
	}
	for _, l := range c.docsOf("Listener") {
		var spec struct {
			Routes []struct{ Cluster string } `yaml:"routes"`
		}
		decodeSpec(t, l, &spec)
		for _, r := range spec.Routes {
			if !clusters[r.Cluster] {
				t.Errorf("listener %s routes to undeclared cluster %q", name(t, l), r.Cluster)
			}
		}
	}
	for _, r := range c.docsOf("Rollout") {
		var spec struct {
			Strategy struct {
				Canary struct {
					StableService string `yaml:"stableService"`
					CanaryService string `yaml:"canaryService"`
					Traffic       struct {
						Nginx struct {
							StableIngress string `yaml:"stableIngress"`
						} `yaml:"nginx"`
					} `yaml:"trafficRouting"`
					Analysis struct {
						Templates []struct {
							TemplateName string `yaml:"templateName"`
						} `yaml:"templates"`
					} `yaml:"analysis"`
				} `yaml:"canary"`
			} `yaml:"strategy"`
		}
		decodeSpec(t, r, &spec)
		cs := spec.Strategy.Canary
		if !clusters[cs.StableService] || !clusters[cs.CanaryService] {
			t.Errorf("rollout %s: stable %q / canary %q not declared", name(t, r), cs.StableService, cs.CanaryService)
		}
		if in := cs.Traffic.Nginx.StableIngress; in != "" && !listeners[in] {
			t.Errorf("rollout %s: stableIngress %q not declared", name(t, r), in)
		}
		for _, tmpl := range cs.Analysis.Templates {
			if !templates[tmpl.TemplateName] {
				t.Errorf("rollout %s: template %q not declared", name(t, r), tmpl.TemplateName)
			}
		}
	}
}

func TestEnvoyDeployment(t *testing.T) {
	objs := loadObjects(t)
	d := find[appsv1.Deployment](t, objs, "envoy")
	checkPod(t, d)
	c := d.Spec.Template.Spec.Containers[0]
	svc := find[corev1.Service](t, objs, "envoy")
	checkService(t, svc, d)

	var cmName string
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.ConfigMap != nil {
			cmName = v.ConfigMap.Name
		}
	}
	cm := find[corev1.ConfigMap](t, objs, cmName)
	cfgPath := ""
	for i, a := range c.Args {
		if a == "-c" && i+1 < len(c.Args) {
			cfgPath = c.Args[i+1]
		}
	}
	mounted := false
	for _, m := range c.VolumeMounts {
		if m.Name == volumeOf(d, cmName) && path.Dir(cfgPath) == m.MountPath {
			mounted = true
		}
	}
	if !mounted {
		t.Fatalf("envoy -c %q is not in the mounted ConfigMap %s", cfgPath, cmName)
	}
	boot := parseBootstrap(t, "ConfigMap "+cmName, []byte(cm.Data[path.Base(cfgPath)]))

	// The bootstrap's xDS cluster points at the sluice Service's xds port.
	sluiceSvc := find[corev1.Service](t, objs, "sluice")
	addr, p := xdsAddress(t, boot)
	if want := "sluice." + namespace + ".svc.cluster.local"; addr != want && addr != "sluice."+namespace+".svc" {
		t.Errorf("xDS address %s, want the sluice Service (%s)", addr, want)
	}
	if p != uint32(servicePort(t, sluiceSvc, "xds")) {
		t.Errorf("xDS port %d, sluice Service xds port %d", p, servicePort(t, sluiceSvc, "xds"))
	}
	// Probes and scrape go through the static health listener, never the admin port.
	health := uint32(containerPorts(d)["health"])
	if !hasListenerOn(boot, health) {
		t.Errorf("no bootstrap listener on the health port %d that the probes use", health)
	}
	if boot.GetAdmin().GetAddress().GetSocketAddress().GetAddress() != "127.0.0.1" {
		t.Errorf("Envoy admin must stay on loopback: %v", boot.GetAdmin().GetAddress())
	}
	if !slices.Contains(c.Args, "$(POD_NAME)") {
		t.Error("envoy should use the pod name as its node id (--service-node $(POD_NAME))")
	}
}

// TestClustersDiscoverServices checks that every Cluster of the Kubernetes config
// discovers its endpoints from a Service shipped here (no fixed addresses any more),
// on a port the Service names and that reaches a Deployment's pods, and that no
// Service pins a ClusterIP.
func TestClustersDiscoverServices(t *testing.T) {
	objs := loadObjects(t)
	cfg := parseSluiceConfig(t, findConfigMap(t, objs, "sluice-config")["sluice.yaml"])
	for _, o := range objs {
		if s, ok := o.obj.(*corev1.Service); ok && s.Spec.ClusterIP != "" {
			t.Errorf("%s: Service %s pins clusterIP %s; discovery makes fixed addresses unnecessary", o.doc, s.Name, s.Spec.ClusterIP)
		}
	}
	n := 0
	for _, c := range cfg.docsOf("Cluster") {
		var spec struct {
			Endpoints  []struct{ Address string } `yaml:"endpoints"`
			Kubernetes *struct {
				Service   string `yaml:"service"`
				Namespace string `yaml:"namespace"`
				Port      string `yaml:"port"`
			} `yaml:"kubernetes"`
		}
		decodeSpec(t, c, &spec)
		cn := name(t, c)
		if len(spec.Endpoints) > 0 {
			t.Errorf("cluster %s lists fixed endpoints %v; discover them", cn, spec.Endpoints)
		}
		k := spec.Kubernetes
		if k == nil {
			t.Errorf("cluster %s has no kubernetes discovery block", cn)
			continue
		}
		n++
		if k.Namespace != namespace {
			t.Errorf("cluster %s: namespace %q, want %q where its Service is", cn, k.Namespace, namespace)
		}
		svc := find[corev1.Service](t, objs, k.Service)
		hasPort := false
		for _, p := range svc.Spec.Ports {
			hasPort = hasPort || p.Name == k.Port
		}
		if !hasPort {
			t.Errorf("cluster %s: Service %s has no port named %q", cn, svc.Name, k.Port)
		}
		var d *appsv1.Deployment
		for _, o := range objs {
			if dd, ok := o.obj.(*appsv1.Deployment); ok && labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(dd.Spec.Template.Labels)) {
				d = dd
			}
		}
		if d == nil {
			t.Errorf("Service %s selects no Deployment", svc.Name)
			continue
		}
		checkPod(t, d)
		checkService(t, svc, d)
	}
	if n == 0 {
		t.Error("no Cluster discovers its endpoints")
	}
}

// TestDiscoveryRBACIsLeastPrivilege checks that the sluice ServiceAccount may get, list
// and watch EndpointSlices in every namespace a Cluster names, and nothing else: one
// Role per such namespace with exactly that rule, bound to that ServiceAccount only, and
// no ClusterRole.
func TestDiscoveryRBACIsLeastPrivilege(t *testing.T) {
	objs := loadObjects(t)
	sluice := find[appsv1.Deployment](t, objs, "sluice")
	sa := find[corev1.ServiceAccount](t, objs, sluice.Spec.Template.Spec.ServiceAccountName)
	cfg := parseSluiceConfig(t, findConfigMap(t, objs, "sluice-config")["sluice.yaml"])
	namespaces := map[string]bool{}
	for _, c := range cfg.docsOf("Cluster") {
		var spec struct {
			Kubernetes *struct{ Namespace string } `yaml:"kubernetes"`
		}
		decodeSpec(t, c, &spec)
		if spec.Kubernetes != nil {
			namespaces[spec.Kubernetes.Namespace] = true
		}
	}
	want := rbacv1.PolicyRule{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"get", "list", "watch"}}
	granted := map[string]bool{}
	roles := map[string]*rbacv1.Role{}
	for _, o := range objs {
		if r, ok := o.obj.(*rbacv1.Role); ok {
			roles[r.Namespace+"/"+r.Name] = r
			if len(r.Rules) != 1 || !reflect.DeepEqual(r.Rules[0], want) {
				t.Errorf("%s: Role %s grants %+v; want exactly %+v", o.doc, r.Name, r.Rules, want)
			}
		}
	}
	for _, o := range objs {
		b, ok := o.obj.(*rbacv1.RoleBinding)
		if !ok {
			continue
		}
		if b.RoleRef.Kind != "Role" || b.RoleRef.APIGroup != rbacv1.GroupName || roles[b.Namespace+"/"+b.RoleRef.Name] == nil {
			t.Errorf("%s: RoleBinding %s refers to %+v, not a Role shipped here in its namespace", o.doc, b.Name, b.RoleRef)
			continue
		}
		want := []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa.Name, Namespace: sa.Namespace}}
		if !reflect.DeepEqual(b.Subjects, want) {
			t.Errorf("%s: RoleBinding %s binds %+v; want only %+v", o.doc, b.Name, b.Subjects, want)
			continue
		}
		granted[b.Namespace] = true
	}
	for ns := range namespaces {
		if !granted[ns] {
			t.Errorf("a Cluster watches namespace %s, but no RoleBinding there lets ServiceAccount %s read EndpointSlices", ns, sa.Name)
		}
	}
	for ns := range granted {
		if !namespaces[ns] {
			t.Errorf("ServiceAccount %s may read EndpointSlices in %s, which no Cluster names", sa.Name, ns)
		}
	}
}
