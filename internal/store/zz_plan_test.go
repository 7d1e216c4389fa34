package store

import (
	"context"
	"fmt"
	"testing"

	"github.com/otter-ota/otter/internal/ota"
)

func TestZZPlan(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, "postgres://postgres@127.0.0.1:5432/test?sslmode=disable&search_path=zzplan", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.CreateProduct(ctx, &ota.Product{Key: "p"})
	for run := range 2 {
		devs := make([]NewDevice, 10000)
		for i := range devs {
			devs[i] = NewDevice{Product: "p", Key: fmt.Sprintf("r%d-%05d", run, i), SecretHash: []byte("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
				Tags: map[string]string{"site": fmt.Sprint(i % 10), "ring": fmt.Sprint(i % 3)}}
		}
		if _, err := st.CreateDevices(ctx, devs); err != nil {
			t.Fatal(err)
		}
	}
}
