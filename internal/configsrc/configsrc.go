// Package configsrc reads the webhook's opt-in ConfigMap: from the API, watched through a
// controller-runtime cache limited to that one object, or from a file or mounted volume.
package configsrc

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/gpu-label-webhook/gpu-label-webhook/internal/admit"
	"github.com/gpu-label-webhook/gpu-label-webhook/internal/metrics"
)

// ReadFile reads a ConfigMap's data from a manifest (YAML or JSON) or from a directory of
// keys, as a ConfigMap volume mounts it. A path that does not exist reads as no data.
func ReadFile(path string) (map[string]string, error) {
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return readDir(path)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseManifest(raw)
}

// parseManifest reads the data of a ConfigMap manifest.
func parseManifest(raw []byte) (map[string]string, error) {
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict(raw, &cm); err != nil {
		return nil, fmt.Errorf("not a ConfigMap manifest: %w", err)
	}
	if cm.Kind != "ConfigMap" {
		return nil, fmt.Errorf("kind is %q, want ConfigMap", cm.Kind)
	}
	return cm.Data, nil
}

// readDir reads a mounted ConfigMap: one file per key; the volume's own entries start with '.'.
func readDir(dir string) (map[string]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	data := map[string]string{}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if st, err := os.Stat(p); err != nil || st.IsDir() {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		data[e.Name()] = string(b)
	}
	return data, nil
}

// apply parses data and puts it in force, or records why it was rejected.
func apply(store *Store, m *metrics.Metrics, log *slog.Logger, origin string, data map[string]string, exists bool) {
	if !exists {
		cfg := admit.DefaultConfig()
		cfg.Origin = origin
		store.Set(cfg)
		m.ConfigReload("deleted", true)
		log.Info("config absent: warn only", "config", origin)
		return
	}
	cfg, err := admit.ParseConfig(data)
	if err != nil {
		store.Reject(err)
		m.ConfigReload("invalid", false)
		log.Error("config rejected, the last good config stays in force", "config", origin, "err", err)
		return
	}
	cfg.Origin = origin
	store.Set(cfg)
	m.ConfigReload("success", true)
	log.Info("config loaded", "config", origin, "autoLabel", cfg.AutoLabel, "labelKey", cfg.LabelKey,
		"nodeSelector", cfg.NodeSelector.String(), "overwrite", cfg.Overwrite, "events", cfg.Events)
}

// WatchFile reads path now and again every interval, applying changes. A polling loop is
// used rather than file notifications because a mounted ConfigMap changes by swapping a
// symlink, which notifications report unreliably.
func WatchFile(ctx context.Context, path string, interval time.Duration, store *Store, m *metrics.Metrics, log *slog.Logger) {
	var last map[string]string
	var lastErr string
	first := true
	for {
		data, err := ReadFile(path)
		switch {
		case err != nil:
			if first || err.Error() != lastErr {
				store.Reject(err)
				m.ConfigReload("invalid", false)
				log.Error("config file unreadable, the last good config stays in force", "path", path, "err", err)
			}
			lastErr = err.Error()
		case first || lastErr != "" || !maps.Equal(data, last):
			apply(store, m, log, path, data, data != nil)
			last, lastErr = data, ""
		}
		first = false
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

// WatchConfigMap watches namespace/name through a cache that holds only that object (so the
// webhook needs get/list/watch on ConfigMaps in its namespace and nothing more). It returns
// once the cache has synced and the first state is in the store; while the apiserver cannot
// be reached it keeps trying (the informer retries with backoff) until ctx ends.
func WatchConfigMap(ctx context.Context, cfg *rest.Config, namespace, name string, store *Store, m *metrics.Metrics, log *slog.Logger) error {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return err
	}
	// The one kind it reads, mapped here: a mapper that asks the apiserver's discovery fails
	// at once when the apiserver is unreachable (a pod whose Service route is not there yet),
	// and the webhook would exit and wait out CrashLoopBackOff.
	mapper := meta.NewDefaultRESTMapper(nil)
	mapper.Add(corev1.SchemeGroupVersion.WithKind("ConfigMap"), meta.RESTScopeNamespace)
	c, err := cache.New(cfg, cache.Options{
		Scheme:            scheme,
		Mapper:            mapper,
		DefaultNamespaces: map[string]cache.Config{namespace: {}},
		ByObject: map[client.Object]cache.ByObject{
			&corev1.ConfigMap{}: {Field: fields.OneTermEqualSelector("metadata.name", name)},
		},
	})
	if err != nil {
		return err
	}
	inf, err := c.GetInformer(ctx, &corev1.ConfigMap{})
	if err != nil {
		return err
	}
	origin := namespace + "/" + name
	onChange := func(obj any) {
		if cm, ok := obj.(*corev1.ConfigMap); ok && cm.Name == name {
			apply(store, m, log, origin, cm.Data, true)
		}
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    onChange,
		UpdateFunc: func(_, obj any) { onChange(obj) },
		DeleteFunc: func(any) { apply(store, m, log, origin, nil, false) },
	}); err != nil {
		return err
	}
	go func() {
		if err := c.Start(ctx); err != nil {
			log.Error("config cache stopped", "err", err)
		}
	}()
	if !c.WaitForCacheSync(ctx) {
		return fmt.Errorf("config cache for %s did not sync", origin)
	}
	var cm corev1.ConfigMap
	err = c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &cm)
	switch {
	case err == nil:
		apply(store, m, log, origin, cm.Data, true)
	case client.IgnoreNotFound(err) == nil:
		apply(store, m, log, origin, nil, false)
	default:
		return err
	}
	return nil
}
