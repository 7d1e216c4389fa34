package engine

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
	"github.com/otter-ota/otter/internal/store/storetest"
	"github.com/otter-ota/otter/sdk/wire"
)

type nowhere struct{}

func (nowhere) Send(string, string, string, []byte)      {}
func (nowhere) DownloadURL(string, string, int64) string { return "http://127.0.0.1:1/dl/1" }

// poisoned fails any write that records a version for one device, as a
// message the database refuses would.
type poisoned struct {
	store.Store
	device int64
}

func (p poisoned) Apply(ctx context.Context, c ota.ChangeSet) ([]int64, error) {
	for _, v := range c.Versions {
		if v.DeviceID == p.device {
			return nil, errors.New("the database refuses this row")
		}
	}
	return p.Store.Apply(ctx, c)
}

// batchFixture is an engine whose loop is not running: the test hands it
// a batch directly, as gather would.
func batchFixture(t *testing.T, wrap func(st store.Store, ids map[string]int64) Store) (*Engine, store.Store, map[string]int64) {
	t.Helper()
	st := storetest.Open(t)
	ctx := context.Background()
	if err := st.CreateProduct(ctx, &ota.Product{Key: "demo"}); err != nil {
		t.Fatal(err)
	}
	var nd []store.NewDevice
	for _, k := range []string{"h1", "h2", "bad"} {
		nd = append(nd, store.NewDevice{Product: "demo", Key: k, SecretHash: []byte("x")})
	}
	devs, err := st.CreateDevices(ctx, nd)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]int64{}
	for _, d := range devs {
		ids[d.Key] = d.ID
	}
	var es Store = st
	if wrap != nil {
		es = wrap(st, ids)
	}
	e, err := New(Config{Store: es, Downlink: nowhere{}, URLs: nowhere{}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return e, st, ids
}

func informOp(e *Engine, id int64, key string) *deviceOp {
	return &deviceOp{result: newResult(), kind: opInform, at: e.now(), dev: Device{ID: id, Product: "demo", Key: key},
		inform: wire.Inform{Modules: map[string]string{"default": "2.0.0"}}}
}

// runBatch runs one batch of informs from h1, bad and h2 and returns each
// one's error.
func runBatch(t *testing.T, e *Engine, ids map[string]int64) map[string]error {
	t.Helper()
	ops := map[string]*deviceOp{}
	var batch []*deviceOp
	for _, k := range []string{"h1", "bad", "h2"} {
		ops[k] = informOp(e, ids[k], k)
		batch = append(batch, ops[k])
	}
	e.runDeviceOps(context.Background(), batch)
	out := map[string]error{}
	for k, o := range ops {
		select {
		case out[k] = <-o.done():
		default:
			t.Fatalf("%s's message was not answered", k)
		}
	}
	return out
}

func checkStored(t *testing.T, st store.Store, keys ...string) {
	t.Helper()
	for _, k := range keys {
		d, err := st.GetDevice(context.Background(), "demo", k)
		if err != nil || d.Versions["default"] != "2.0.0" || d.LastSeen == nil {
			t.Errorf("%s: %+v, %v; want its version and last_seen stored", k, d, err)
		}
	}
}

// A deleted device's inform shares a batch with healthy devices' informs:
// it is refused as unauthorized, and theirs are stored.
func TestDeletedDevicesMessageFailsAloneInItsBatch(t *testing.T) {
	e, st, ids := batchFixture(t, nil)
	if err := st.DeleteDevice(context.Background(), "demo", "bad"); err != nil {
		t.Fatal(err)
	}
	errs := runBatch(t, e, ids)
	var we *wire.Error
	if !errors.As(errs["bad"], &we) || we.Code != wire.CodeUnauthorized {
		t.Errorf("deleted device: %v, want unauthorized", errs["bad"])
	}
	if errs["h1"] != nil || errs["h2"] != nil {
		t.Fatalf("healthy devices failed with it: h1 %v, h2 %v", errs["h1"], errs["h2"])
	}
	checkStored(t, st, "h1", "h2")
}

// Any other message the store refuses fails alone too: the batch is
// written again without it.
func TestMessageTheStoreRefusesFailsAloneInItsBatch(t *testing.T) {
	e, st, ids := batchFixture(t, func(st store.Store, ids map[string]int64) Store {
		return poisoned{Store: st, device: ids["bad"]}
	})
	errs := runBatch(t, e, ids)
	if ota.ErrorCode(errs["bad"]) != ota.EUNAVAILABLE {
		t.Errorf("refused message: %v, want unavailable (the device sends it again)", errs["bad"])
	}
	if errs["h1"] != nil || errs["h2"] != nil {
		t.Fatalf("healthy devices failed with it: h1 %v, h2 %v", errs["h1"], errs["h2"])
	}
	checkStored(t, st, "h1", "h2")
}
