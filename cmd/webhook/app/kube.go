package app

import (
	"fmt"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// restConfig loads a client config the way kubectl does: --kubeconfig, then KUBECONFIG, then
// ~/.kube/config, then the in-cluster config.
func restConfig(kubeconfig, context string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: context}).ClientConfig()
	if err != nil {
		if ic, icErr := rest.InClusterConfig(); icErr == nil && kubeconfig == "" {
			return ic, nil
		}
		return nil, fmt.Errorf("no cluster: %w (give --kubeconfig or set KUBECONFIG)", err)
	}
	cfg.UserAgent = "gpu-label-webhook"
	return cfg, nil
}

// cliClient is check's and label's client. Its own rate limiter is off (QPS -1, as
// controller-runtime's clients have it): client-go's default, 5 requests a second, made label
// take minutes on a fleet. kubectl label is fast for another reason than its limits (raised
// only for discovery): cli-runtime builds a REST client, with a fresh limiter, for every object
// it visits. Here label's --concurrency bounds what is in flight and the apiserver's API
// Priority and Fairness sheds the rest with 429s, which client-go retries after Retry-After.
func cliClient(kubeconfig, context string) (kubernetes.Interface, error) {
	rc, err := restConfig(kubeconfig, context)
	if err != nil {
		return nil, err
	}
	rc.QPS, rc.Burst = -1, 0
	return kubernetes.NewForConfig(rc)
}
