// Command gitops judges live objects the way GitOps tools do, with their own libraries: kstatus (Flux, kpt,
// cli-utils), Flux's CEL health checks (cel-go) and Argo CD's custom health checks (gopher-lua, with the libraries
// Argo CD opens for them).
//
//	gitops kstatus < objects.json          one JSON line {"status", "message"} per object
//	gitops argo SCRIPT < objects.json      one JSON line {"status", "message"} per object
//	gitops argo-tests DIR                  run every <group>/<Kind>/health_test.yaml under DIR
//	gitops flux KUSTOMIZATION < objects    Flux's health: the Kustomization's healthCheckExprs (CEL), else kstatus
//
// Objects come as one JSON or YAML document each, or as a list (items).
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	yamlutil "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

type verdict struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "gitops:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: gitops kstatus | argo SCRIPT | argo-tests DIR | flux KUSTOMIZATION")
	}
	switch args[0] {
	case "kstatus":
		return each(os.Stdin, func(obj *unstructured.Unstructured) (verdict, error) {
			res, err := status.Compute(obj)
			if err != nil {
				return verdict{}, err
			}
			return verdict{Status: res.Status.String(), Message: res.Message}, nil
		})
	case "argo":
		if len(args) != 2 {
			return errors.New("usage: gitops argo SCRIPT")
		}
		script, err := os.ReadFile(args[1])
		if err != nil {
			return err
		}
		return each(os.Stdin, func(obj *unstructured.Unstructured) (verdict, error) {
			return argoHealth(obj.Object, string(script))
		})
	case "flux":
		if len(args) != 2 {
			return errors.New("usage: gitops flux KUSTOMIZATION")
		}
		exprs, err := fluxExprs(args[1])
		if err != nil {
			return err
		}
		return each(os.Stdin, func(obj *unstructured.Unstructured) (verdict, error) {
			return fluxHealth(exprs, obj)
		})
	case "argo-tests":
		if len(args) != 2 {
			return errors.New("usage: gitops argo-tests DIR")
		}
		return argoTests(args[1])
	}
	return fmt.Errorf("unknown command %q", args[0])
}

// each judges every object read from r and prints one verdict per line.
func each(r io.Reader, judge func(*unstructured.Unstructured) (verdict, error)) error {
	objects, err := decode(r)
	if err != nil {
		return err
	}
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for _, obj := range objects {
		v, err := judge(obj)
		if err != nil {
			return err
		}
		line, _ := json.Marshal(v)
		fmt.Fprintln(out, string(line))
	}
	return nil
}

func decode(r io.Reader) ([]*unstructured.Unstructured, error) {
	reader := yamlutil.NewYAMLOrJSONDecoder(r, 4096)
	var objects []*unstructured.Unstructured
	for {
		var doc json.RawMessage
		if err := reader.Decode(&doc); err != nil {
			if errors.Is(err, io.EOF) {
				return objects, nil
			}
			return nil, err
		}
		var list struct {
			Items []json.RawMessage `json:"items"`
		}
		if err := json.Unmarshal(doc, &list); err != nil {
			return nil, err
		}
		items := list.Items
		if items == nil {
			items = []json.RawMessage{doc}
		}
		for _, raw := range items {
			// Unstructured's own decoding, as client-go does: integers stay int64 (kstatus needs them so).
			obj := &unstructured.Unstructured{}
			if err := obj.UnmarshalJSON(raw); err != nil {
				return nil, err
			}
			objects = append(objects, obj)
		}
	}
}

// argoTests runs Argo CD's resource_customizations test layout: health_test.yaml lists inputPath and the expected
// healthStatus, next to health.lua.
func argoTests(root string) error {
	tests, err := filepath.Glob(filepath.Join(root, "*", "*", "health_test.yaml"))
	if err != nil {
		return err
	}
	if len(tests) == 0 {
		return fmt.Errorf("no */*/health_test.yaml under %s", root)
	}
	failed := 0
	for _, path := range tests {
		dir := filepath.Dir(path)
		script, err := os.ReadFile(filepath.Join(dir, "health.lua"))
		if err != nil {
			return err
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var spec struct {
			Tests []struct {
				HealthStatus verdict `json:"healthStatus"`
				InputPath    string  `json:"inputPath"`
			} `json:"tests"`
		}
		if err := yaml.UnmarshalStrict(raw, &spec); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if len(spec.Tests) == 0 {
			return fmt.Errorf("%s: no tests", path)
		}
		for _, tc := range spec.Tests {
			input, err := os.ReadFile(filepath.Join(dir, tc.InputPath))
			if err != nil {
				return err
			}
			obj := map[string]interface{}{}
			if err := yaml.Unmarshal(input, &obj); err != nil {
				return fmt.Errorf("%s: %w", tc.InputPath, err)
			}
			got, err := argoHealth(obj, string(script))
			if err != nil {
				return fmt.Errorf("%s: %w", tc.InputPath, err)
			}
			name := strings.TrimPrefix(filepath.Join(dir, tc.InputPath), root+string(filepath.Separator))
			if got != tc.HealthStatus {
				failed++
				fmt.Printf("FAIL %s: got %+v, want %+v\n", name, got, tc.HealthStatus)
			} else {
				fmt.Printf("ok   %s: %s\n", name, got.Status)
			}
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d health test(s) failed", failed)
	}
	return nil
}
