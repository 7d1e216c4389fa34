package client

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/otter-ota/otter/internal/ota"
)

// TestModelsMirrorDomainTypes keeps the public model types in step with the
// server's JSON: when a field is added to an ota type, this test names it.
func TestModelsMirrorDomainTypes(t *testing.T) {
	tests := []struct {
		domain, model any
	}{
		{ota.Product{}, Product{}},
		{ota.Device{}, Device{}},
		{ota.Firmware{}, Firmware{}},
		{ota.Token{}, Token{}},
		{ota.Event{}, Event{}},
		{ota.Task{}, Task{}},
		{ota.Target{}, Target{}},
		{ota.Policy{}, Policy{}},
		{ota.Window{}, Window{}},
		{ota.Job{}, Job{}},
	}
	for _, tt := range tests {
		name := reflect.TypeOf(tt.model).Name()
		if diff := cmp.Diff(jsonFields(reflect.TypeOf(tt.domain)), jsonFields(reflect.TypeOf(tt.model))); diff != "" {
			t.Errorf("client.%s and ota.%s have different JSON fields (-ota +client):\n%s", name, name, diff)
		}
	}
}

// jsonFields lists the JSON names of t's fields, sorted.
func jsonFields(t reflect.Type) []string {
	var names []string
	for f := range t.Fields() {
		tag := f.Tag.Get("json")
		if tag == "-" || !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if name == "" {
			name = f.Name
		}
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}
