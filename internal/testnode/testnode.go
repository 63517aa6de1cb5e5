// Package testnode builds Node objects and AdmissionReviews shaped like the ones a real
// cluster sends (a kubelet's registration, a status report), for tests and benchmarks.
package testnode

import (
	"encoding/json"
	"fmt"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
)

// Bare is a node with only a name and labels.
func Bare(name string, labels map[string]string) *corev1.Node {
	return &corev1.Node{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
	}
}

// Realistic is a node as an EKS kubelet reports it: about 60 labels and annotations, 40
// container images, conditions, addresses and capacity, some 15 KB of JSON.
func Realistic(name, instanceType string, gpus int64) *corev1.Node {
	labels := map[string]string{
		"kubernetes.io/hostname":                   name,
		"kubernetes.io/os":                         "linux",
		"kubernetes.io/arch":                       "amd64",
		"node.kubernetes.io/instance-type":         instanceType,
		"beta.kubernetes.io/instance-type":         instanceType,
		"beta.kubernetes.io/os":                    "linux",
		"beta.kubernetes.io/arch":                  "amd64",
		"topology.kubernetes.io/region":            "us-east-1",
		"topology.kubernetes.io/zone":              "us-east-1a",
		"failure-domain.beta.kubernetes.io/region": "us-east-1",
		"failure-domain.beta.kubernetes.io/zone":   "us-east-1a",
		"eks.amazonaws.com/nodegroup":              "gpu-a",
		"eks.amazonaws.com/nodegroup-image":        "ami-0123456789abcdef0",
		"eks.amazonaws.com/capacityType":           "ON_DEMAND",
		"eks.amazonaws.com/sourceLaunchTemplateId": "lt-0123456789abcdef0",
		"topology.k8s.aws/zone-id":                 "use1-az4",
	}
	for i := 0; len(labels) < 40; i++ {
		labels[fmt.Sprintf("example.com/team-label-%02d", i)] = fmt.Sprintf("value-%02d", i)
	}
	annotations := map[string]string{
		"node.alpha.kubernetes.io/ttl":                           "0",
		"volumes.kubernetes.io/controller-managed-attach-detach": "true",
		"alpha.kubernetes.io/provided-node-ip":                   "10.0.12.34",
	}
	for i := 0; len(annotations) < 20; i++ {
		annotations[fmt.Sprintf("example.com/annotation-%02d", i)] = fmt.Sprintf("some annotation value number %02d", i)
	}
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse("96"),
		corev1.ResourceMemory:           resource.MustParse("1176926456Ki"),
		corev1.ResourcePods:             resource.MustParse("737"),
		corev1.ResourceEphemeralStorage: resource.MustParse("104845292Ki"),
		"hugepages-1Gi":                 resource.MustParse("0"),
		"hugepages-2Mi":                 resource.MustParse("0"),
	}
	if gpus > 0 {
		capacity["nvidia.com/gpu"] = *resource.NewQuantity(gpus, resource.DecimalSI)
	}
	images := make([]corev1.ContainerImage, 40)
	for i := range images {
		images[i] = corev1.ContainerImage{
			Names: []string{
				fmt.Sprintf("123456789012.dkr.ecr.us-east-1.amazonaws.com/team/service-%02d@sha256:%064x", i, i*7919),
				fmt.Sprintf("123456789012.dkr.ecr.us-east-1.amazonaws.com/team/service-%02d:v1.%d.0", i, i),
			},
			SizeBytes: int64(100000000 + i*1234567),
		}
	}
	t := metav1.Unix(1764300000, 0)
	cond := func(typ corev1.NodeConditionType, status corev1.ConditionStatus, reason, msg string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: typ, Status: status, LastHeartbeatTime: t, LastTransitionTime: t, Reason: reason, Message: msg}
	}
	return &corev1.Node{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: annotations, UID: types.UID("5b0c6a4e-2f2d-4d55-9a53-" + fmt.Sprintf("%012d", len(name)))},
		Spec:       corev1.NodeSpec{ProviderID: "aws:///us-east-1a/i-0123456789abcdef0"},
		Status: corev1.NodeStatus{
			Capacity:    capacity,
			Allocatable: capacity,
			Conditions: []corev1.NodeCondition{
				cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
				cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
				cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
				cond(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady", "kubelet is posting ready status"),
			},
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: "10.0.12.34"},
				{Type: corev1.NodeHostName, Address: name},
				{Type: corev1.NodeInternalDNS, Address: name},
			},
			DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: 10250}},
			NodeInfo: corev1.NodeSystemInfo{
				MachineID: "ec2a0c1b2d3e4f5a6b7c8d9e0f1a2b3c", SystemUUID: "ec2a0c1b-2d3e-4f5a-6b7c-8d9e0f1a2b3c", BootID: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
				KernelVersion: "6.1.112-124.190.amzn2023.x86_64", OSImage: "Amazon Linux 2023.6.20241121", ContainerRuntimeVersion: "containerd://1.7.23",
				KubeletVersion: "v1.37.2-eks-7f9249a", OperatingSystem: "linux", Architecture: "amd64",
			},
			Images: images,
		},
	}
}

// Review is an admission.k8s.io/v1 AdmissionReview for a Node write, as the apiserver sends
// it; old is nil for a CREATE. subresource is "" or "status".
func Review(uid string, op admissionv1.Operation, subresource string, node, old *corev1.Node, user string, dryRun bool) []byte {
	req := &admissionv1.AdmissionRequest{
		UID:             types.UID(uid),
		Kind:            metav1.GroupVersionKind{Version: "v1", Kind: "Node"},
		Resource:        metav1.GroupVersionResource{Version: "v1", Resource: "nodes"},
		SubResource:     subresource,
		RequestKind:     &metav1.GroupVersionKind{Version: "v1", Kind: "Node"},
		RequestResource: &metav1.GroupVersionResource{Version: "v1", Resource: "nodes"},
		Name:            node.Name,
		Operation:       op,
		UserInfo:        authenticationv1.UserInfo{Username: user, Groups: []string{"system:nodes", "system:authenticated"}},
		Object:          runtime.RawExtension{Raw: mustJSON(node)},
		DryRun:          &dryRun,
	}
	switch op {
	case admissionv1.Create:
		req.Options = runtime.RawExtension{Raw: []byte(`{"kind":"CreateOptions","apiVersion":"meta.k8s.io/v1"}`)}
	case admissionv1.Update:
		req.Options = runtime.RawExtension{Raw: []byte(`{"kind":"UpdateOptions","apiVersion":"meta.k8s.io/v1"}`)}
		req.OldObject = runtime.RawExtension{Raw: mustJSON(old)}
	}
	return mustJSON(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  req,
	})
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
