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
// controller-runtime's clients have it): client-go's default, 5 requests a second, is what made
// label take minutes. Load is bounded by label's --concurrency and shed by the apiserver's
// API Priority and Fairness, whose 429s client-go retries after their Retry-After.
func cliClient(kubeconfig, context string) (kubernetes.Interface, error) {
	rc, err := restConfig(kubeconfig, context)
	if err != nil {
		return nil, err
	}
	rc.QPS, rc.Burst = -1, 0
	return kubernetes.NewForConfig(rc)
}
