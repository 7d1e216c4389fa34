package console_test

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
)

// The task page's edit form shows the policy, changes only what was
// edited, refuses bad values with nothing changed, and records an event.
func TestTaskPolicyEditForm(t *testing.T) {
	s := newStack(t)
	s.fleet("thermostat", 3)
	admin := s.signedIn(ota.RoleAdmin)
	fw, err := strconv.ParseInt(s.firmwareFor(admin, "thermostat", "1.2.0", nil), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	end := time.Now().Add(48 * time.Hour).Truncate(time.Second).Add(123 * time.Millisecond)
	task, err := s.eng.CreateTask(ota.WithActor(s.ctx, "admin-token"), ota.TaskSpec{FirmwareID: fw, Mode: ota.ModePush,
		Target: ota.Target{All: true}, Policy: ota.Policy{Rate: 10, End: &end, Phases: []float64{50, 100}, Retries: 1}})
	if err != nil {
		t.Fatal(err)
	}
	path := "/tasks/" + strconv.FormatInt(task.ID, 10)
	op := s.signedIn(ota.RoleOperator)
	_, page := op.get(path)
	mustContain(t, "task page", page, "Change the policy")
	for _, want := range []string{`name="rate" value="10"`, `name="end" value="` + end.UTC().Format("2006-01-02T15:04:05") + `"`} {
		if !strings.Contains(page, want) {
			t.Errorf("the edit form lacks %s", want)
		}
	}

	form := url.Values{"rate": {"100"}, "max_concurrent": {"2"}, "retries": {"1"}, "tz": {"UTC"}, "phase_gate": {""},
		"end": {end.UTC().Format("2006-01-02T15:04:05")}}
	status, body := op.post(path+"/policy", form)
	if status != http.StatusOK {
		t.Fatalf("edit: %d %s", status, text(body))
	}
	mustContain(t, "edited", body, "Policy changed: max_concurrent - -> 2, rate 10 -> 100.")
	got, err := s.st.GetTask(s.ctx, task.ID)
	if err != nil {
		t.Fatal(err)
	}
	if p := got.Policy; p.Rate != 100 || p.MaxConcurrent != 2 || !p.End.Equal(end) || len(p.Phases) != 2 || p.Retries != 1 {
		t.Fatalf("policy after the edit: %+v", p)
	}

	form.Set("rate", "-3")
	status, body = op.post(path+"/policy", form)
	if status != http.StatusBadRequest {
		t.Fatalf("bad rate: %d", status)
	}
	mustContain(t, "bad rate", body, "The policy was not changed", "rate: Enter a whole number of 0 or more")
	if again, _ := s.st.GetTask(s.ctx, task.ID); again.Policy.Rate != 100 {
		t.Fatalf("a refused edit changed the rate to %d", again.Policy.Rate)
	}
	events, _, err := s.st.ListEvents(s.ctx, store.EventFilter{TaskID: task.ID}, store.Page{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range events {
		if e.Action == ota.ActionPolicyChanged {
			n++
			if e.Data["rate"] != "10 -> 100" {
				t.Errorf("event data %v", e.Data)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d policy_changed events, want 1", n)
	}
	viewer := s.signedIn(ota.RoleViewer)
	if _, page := viewer.get(path); strings.Contains(page, "Change the policy") {
		t.Errorf("a viewer is offered the edit form")
	}
}
