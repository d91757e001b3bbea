package main

// Flux's custom health checks (Kustomization spec.healthCheckExprs, Flux RFC-0009) evaluated as kustomize-controller
// evaluates them: an object whose status.observedGeneration differs from metadata.generation is InProgress without
// evaluating anything; otherwise inProgress, failed and current are tried in that order and the first true one
// decides; none true is InProgress. The expressions see the object's top-level fields (metadata, spec, status) as
// variables, in the CEL environment fluxcd/pkg/runtime/cel builds (parsed, not type-checked). Objects of a kind
// without an entry are judged by kstatus, as Flux does.

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/ext"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type healthCheckExprs struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Current    string `json:"current"`
	InProgress string `json:"inProgress"`
	Failed     string `json:"failed"`
}

// fluxExprs reads spec.healthCheckExprs of the Kustomization(s) in a manifest file.
func fluxExprs(path string) ([]healthCheckExprs, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	objects, err := decode(f)
	if err != nil {
		return nil, err
	}
	var found []healthCheckExprs
	for _, obj := range objects {
		if obj.GetKind() != "Kustomization" {
			continue
		}
		entries, _, err := unstructured.NestedSlice(obj.Object, "spec", "healthCheckExprs")
		if err != nil {
			return nil, err
		}
		for _, entry := range entries {
			m, ok := entry.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%s: a healthCheckExprs entry is not a mapping", path)
			}
			str := func(k string) string { s, _ := m[k].(string); return s }
			e := healthCheckExprs{str("apiVersion"), str("kind"), str("current"), str("inProgress"), str("failed")}
			if e.Current == "" {
				return nil, fmt.Errorf("%s: healthCheckExprs for %s has no current expression", path, e.Kind)
			}
			found = append(found, e)
		}
	}
	if len(found) == 0 {
		return nil, errors.New(path + ": no Kustomization with spec.healthCheckExprs")
	}
	return found, nil
}

func celProgram(expr string) (cel.Program, error) {
	env, err := cel.NewEnv(
		cel.HomogeneousAggregateLiterals(),
		cel.EagerlyValidateDeclarations(true),
		cel.DefaultUTCTimeZone(true),
		cel.CrossTypeNumericComparisons(true),
		cel.OptionalTypes(),
		ext.Strings(),
		ext.Sets(),
		ext.Encoders(),
	)
	if err != nil {
		return nil, err
	}
	ast, issues := env.Parse(expr)
	if issues != nil && issues.Err() != nil {
		return nil, fmt.Errorf("parsing %q: %w", expr, issues.Err())
	}
	return env.Program(ast, cel.EvalOptions(cel.OptOptimize), cel.InterruptCheckFrequency(100))
}

func fluxHealth(exprs []healthCheckExprs, obj *unstructured.Unstructured) (verdict, error) {
	var entry *healthCheckExprs
	for i := range exprs {
		if exprs[i].APIVersion == obj.GetAPIVersion() && exprs[i].Kind == obj.GetKind() {
			entry = &exprs[i]
		}
	}
	if entry == nil {
		res, err := status.Compute(obj)
		if err != nil {
			return verdict{}, err
		}
		return verdict{Status: res.Status.String(), Message: "kstatus: " + res.Message}, nil
	}
	observed, hasObserved, err := unstructured.NestedInt64(obj.Object, "status", "observedGeneration")
	if err != nil {
		return verdict{}, err
	}
	if hasObserved && observed != obj.GetGeneration() {
		return verdict{Status: status.InProgressStatus.String(), Message: "observedGeneration behind generation"}, nil
	}
	for _, step := range []struct {
		expr   string
		status status.Status
	}{{entry.InProgress, status.InProgressStatus}, {entry.Failed, status.FailedStatus}, {entry.Current, status.CurrentStatus}} {
		if step.expr == "" {
			continue
		}
		prog, err := celProgram(step.expr)
		if err != nil {
			return verdict{}, err
		}
		val, _, err := prog.ContextEval(context.Background(), obj.Object)
		if err != nil {
			return verdict{}, fmt.Errorf("evaluating %q: %w", step.expr, err)
		}
		b, ok := val.(types.Bool)
		if !ok {
			return verdict{}, fmt.Errorf("%q is not a boolean", step.expr)
		}
		if b {
			return verdict{Status: step.status.String(), Message: step.expr}, nil
		}
	}
	return verdict{Status: status.InProgressStatus.String(), Message: "no expression is true"}, nil
}
