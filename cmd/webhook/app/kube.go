package app

import (
	"fmt"

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
