// kstatus reads Kubernetes objects as a JSON list on stdin and prints, one line per object,
// its name and the status kstatus computes for it (the library Flux health checks use).
package main

import (
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func main() {
	var objects []map[string]interface{}
	data, err := io.ReadAll(os.Stdin)
	if err == nil {
		err = json.Unmarshal(data, &objects) // integers as int64, as the API machinery expects
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kstatus: reading a JSON list of objects:", err)
		os.Exit(2)
	}
	for _, object := range objects {
		u := &unstructured.Unstructured{Object: object}
		result, err := status.Compute(u)
		if err != nil {
			fmt.Fprintln(os.Stderr, "kstatus:", u.GetName(), err)
			os.Exit(1)
		}
		fmt.Printf("%s\t%s\t%s\n", u.GetName(), result.Status, result.Message)
	}
}
