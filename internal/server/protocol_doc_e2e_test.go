package server_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/sdk/wire"
)

// These tests hold docs/protocol.md to the server: they read the examples
// out of the document (its JSON blocks, the JSON in its sequence diagrams,
// the HTTP tables and the outputs of the session by hand) and play each
// against a real server, over a raw MQTT client and plain net/http. Fields
// whose values cannot be known in advance (job ids, hashes, signatures,
// URLs, sizes) are compared by presence; every other value must be equal.

// protocolDoc is what the tests read from docs/protocol.md.
type protocolDoc struct {
	// json holds the JSON values of each ```json block, by the number of
	// the section above it ("4.1").
	json map[string][]map[string]any
	// diagram holds the complete JSON messages of the sequence diagrams, by
	// message kind ("confirm").
	diagram map[wire.Kind][]string
	// calls and errors are the rows of the HTTP device API's tables.
	calls, errors [][]string
	// output holds the lines of the session by hand's output blocks.
	output []string
}

var (
	docHeading = regexp.MustCompile(`^#{2,3} (\d+(?:\.\d+)?)\.? `)
	docArrow   = regexp.MustCompile(`->>[A-Z]: (\w+) (\{.*\})\s*$`)
)

func readProtocolDoc(t *testing.T) protocolDoc {
	t.Helper()
	b, err := os.ReadFile("../../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := protocolDoc{json: map[string][]map[string]any{}, diagram: map[wire.Kind][]string{}}
	var section, fence string
	var block bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case fence == "" && strings.HasPrefix(line, "```"):
			fence = strings.TrimPrefix(line, "```")
			if fence == "" {
				fence = "text"
			}
			block.Reset()
		case fence != "" && line == "```":
			if fence == "json" {
				doc.json[section] = append(doc.json[section], decodeAll(t, section, block.Bytes())...)
			}
			fence = ""
		case fence != "":
			block.WriteString(line + "\n")
			doc.addFenced(fence, section, line)
		default:
			if m := docHeading.FindStringSubmatch(line); m != nil {
				section = m[1]
			}
			doc.addTableRow(section, line)
		}
	}
	return doc
}

func (doc *protocolDoc) addFenced(fence, section, line string) {
	if m := docArrow.FindStringSubmatch(line); fence == "mermaid" && m != nil && json.Valid([]byte(m[2])) {
		doc.diagram[wire.Kind(m[1])] = append(doc.diagram[wire.Kind(m[1])], m[2])
	}
	if fence == "text" && strings.HasPrefix(section, "9") {
		doc.output = append(doc.output, line)
	}
}

func (doc *protocolDoc) addTableRow(section, line string) {
	if section != "6" || !strings.HasPrefix(line, "| ") {
		return
	}
	var cells []string
	for _, c := range strings.Split(strings.Trim(line, "|"), "|") {
		cells = append(cells, strings.TrimSpace(c))
	}
	switch {
	case strings.HasPrefix(cells[0], "`POST ") || strings.HasPrefix(cells[0], "`GET "):
		doc.calls = append(doc.calls, cells)
	case regexp.MustCompile(`^\d{3}`).MatchString(cells[0]):
		doc.errors = append(doc.errors, cells)
	}
}

// decodeAll decodes the JSON values of a block: one object over several
// lines, or one per line.
func decodeAll(t *testing.T, section string, b []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	for {
		var v map[string]any
		err := dec.Decode(&v)
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("docs/protocol.md section %s: a JSON example does not parse: %v", section, err)
		}
		out = append(out, v)
	}
}

// example returns the i-th JSON example of a section.
func (doc protocolDoc) example(t *testing.T, section string, i int) map[string]any {
	t.Helper()
	if len(doc.json[section]) <= i {
		t.Fatalf("docs/protocol.md section %s has %d JSON examples; the test reads example %d", section, len(doc.json[section]), i+1)
	}
	return doc.json[section][i]
}

// raw is an example as bytes, with fields replaced (a job id the server
// chose).
func raw(t *testing.T, example map[string]any, set map[string]any) []byte {
	t.Helper()
	m := maps.Clone(example)
	maps.Copy(m, set)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sameAs checks that a message the server sent has exactly the fields of
// the documented example, with the same values except the variable ones,
// which need only be present.
func sameAs(t *testing.T, what string, example map[string]any, got []byte, variable ...string) map[string]any {
	t.Helper()
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(got))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("%s: the server sent %q: %v", what, got, err)
	}
	if want, have := slices.Sorted(maps.Keys(example)), slices.Sorted(maps.Keys(m)); !slices.Equal(want, have) {
		t.Errorf("%s: the server sent the fields %v, docs/protocol.md shows %v\nserver: %s", what, have, want, got)
	}
	for k, v := range example {
		if !slices.Contains(variable, k) && !reflect.DeepEqual(m[k], v) {
			t.Errorf("%s: field %q is %v on the server, %v in docs/protocol.md", what, k, m[k], v)
		}
	}
	return m
}

// TestProtocolDocExamplesOverMQTT plays the examples of sections 4 and 8
// with a raw MQTT device.
func TestProtocolDocExamplesOverMQTT(t *testing.T) {
	doc := readProtocolDoc(t)
	o := start(t)
	fw := o.docFirmware(doc)
	secrets := o.devices("d1", "d2")
	d := o.docDevice("d1", secrets["d1"])
	o.docInformAndRequest(doc, d)
	d = o.docPush(doc, d, fw, secrets["d1"])
	o.docCancel(doc, d, fw)
	o.docPacedReply(doc, fw, secrets)
	checkDiagramMessages(t, doc)
}

// docInformAndRequest: 4.1, the inform example is stored as given; 4.2 and
// 4.6, a request with nothing to offer gets the first reply example, and the
// session by hand (9.1) shows the same line.
func (o *otter) docInformAndRequest(doc protocolDoc, d *rawDevice) {
	t := o.t
	t.Helper()
	inform := doc.example(t, "4.1", 0)
	d.publish(d.topic(wire.KindInform), raw(t, inform, nil))
	o.eventually(func() bool {
		dev, err := o.api.Device(o.ctx(), "demo", "d1")
		return err == nil && reflect.DeepEqual(anyMap(dev.Versions), inform["modules"])
	}, "the versions of the inform example")
	d.publish(d.topic(wire.KindRequest), raw(t, doc.example(t, "4.2", 0), nil))
	got := d.next(wire.KindReply)
	sameAs(t, "no_upgrade reply", doc.example(t, "4.6", 0), got)
	d.publish(d.topic(wire.KindRequest), []byte(`{"module":"default"}`))
	got = d.next(wire.KindReply)
	if want := "otter/v1/demo/d1/reply " + string(got); !slices.Contains(doc.output, want) {
		t.Errorf("section 9.1 does not show the reply the server sends: %s", want)
	}
}

// docPush: 4.5, the command of a push task has the example's fields and
// values; 4.3 and 4.4, confirm and progress are taken; 4.6, a malformed
// report is answered about its job; 8, a device that lost its power after
// its first report gets its command again when it reconnects. It returns
// the reconnected device.
func (o *otter) docPush(doc protocolDoc, d *rawDevice, fw *client.Firmware, secret string) *rawDevice {
	t := o.t
	t.Helper()
	// 4.5: the command of a push task has the example's fields and values.
	task := o.create(o.ctx(), client.TaskCreate{FirmwareID: fw.ID, Target: client.Target{Devices: []string{"d1"}}})
	up := sameAs(t, "upgrade command", doc.example(t, "4.5", 0), d.next(wire.KindUpgrade), "job", "size", "sha256", "signature", "url", "command_signature")
	job, attempt := up["job"].(string), up["attempt"]

	// 4.3 and 4.4: confirm and progress, with the server's job id.
	d.publish(d.topic(wire.KindConfirm), raw(t, doc.example(t, "4.3", 0), map[string]any{"job": job}))
	o.jobIs(job, client.JobAccepted, 0, "")
	progress := doc.example(t, "4.4", 0)
	d.publish(d.topic(wire.KindProgress), raw(t, progress, map[string]any{"job": job}))
	pct, _ := progress["percent"].(json.Number).Int64()
	o.jobIs(job, client.JobState(progress["state"].(string)), int(pct), "")

	// 4.6: the malformed example answers a progress whose percent is 140,
	// and names its job.
	bad := doc.example(t, "4.6", 2)
	d.publish(d.topic(wire.KindProgress), []byte(`{"job":"`+job+`","state":"downloading","percent":140}`))
	sameAs(t, "malformed reply", withJob(bad, job), d.next(wire.KindReply))

	// 8: a device that lost its power after its first report gets its
	// command again when it reconnects.
	_ = d.c.Disconnect(&paho.Disconnect{})
	// The new connection uses the same client id: it comes once the broker
	// has let the old one go (a takeover racing the old connection's
	// clean-up is not what section 8 describes).
	o.eventually(func() bool {
		dev, err := o.api.Device(o.ctx(), "demo", "d1")
		return err == nil && !dev.Online && o.metric("otter_mqtt_connected_clients 0")
	}, "the broker to let d1's first connection go")
	d = o.docDevice("d1", secret)
	again := sameAs(t, "command after a reconnect", doc.example(t, "4.5", 0), d.next(wire.KindUpgrade), "job", "size", "sha256", "signature", "url", "command_signature")
	if again["job"] != job || again["attempt"] != attempt {
		t.Errorf("after a reconnect the server sent job %v attempt %v; want job %s attempt %v again", again["job"], again["attempt"], job, attempt)
	}

	// 4.4: the failure example ends the job with its code and message.
	failed := doc.example(t, "4.4", 1)
	d.publish(d.topic(wire.KindProgress), raw(t, failed, map[string]any{"job": job}))
	o.jobIs(job, client.JobFailed, -1, failed["code"].(string)+": "+failed["message"].(string))
	o.waitTask(o.ctx(), task.ID, client.TaskCompleted)
	return d
}

// docCancel: 4.5 and 8, an operator's cancel reaches the device as the
// documented cancel, and a late report on the job is answered with it again.
func (o *otter) docCancel(doc protocolDoc, d *rawDevice, fw *client.Firmware) {
	t := o.t
	t.Helper()
	task := o.create(o.ctx(), client.TaskCreate{FirmwareID: fw.ID, Target: client.Target{Devices: []string{"d1"}}})
	u, err := wire.DecodeUpgrade(d.next(wire.KindUpgrade))
	if err != nil {
		t.Fatal(err)
	}
	d.publish(d.topic(wire.KindProgress), wire.Progress{Job: u.Job, Attempt: u.Attempt, State: wire.StateDownloading, Percent: 30})
	o.jobIs(u.Job, client.JobDownloading, 30, "")
	if _, err := o.api.CancelTask(o.ctx(), task.ID); err != nil {
		t.Fatal(err)
	}
	cancel := map[string]any{"job": u.Job, "cancel": true, "attempt": json.Number(strconv.Itoa(u.Attempt))}
	sameAs(t, "cancel", cancel, d.next(wire.KindUpgrade))
	if !strings.Contains(docText(t), "`{\"job\":\"42\",\"cancel\":true}` (optionally with `attempt`)") {
		t.Error("section 4.5 no longer shows the cancel message the test checks")
	}
	d.publish(d.topic(wire.KindProgress), wire.Progress{Job: u.Job, Attempt: u.Attempt, State: wire.StateDownloading, Percent: 40})
	sameAs(t, "cancel after a late report", cancel, d.next(wire.KindUpgrade))
}

// docPacedReply: 4.6, a request that a paced rollout holds back gets the
// second reply example, with a retry_after.
func (o *otter) docPacedReply(doc protocolDoc, fw *client.Firmware, secrets map[string]string) {
	t := o.t
	t.Helper()
	d2 := o.docDevice("d2", secrets["d2"])
	d2.publish(d2.topic(wire.KindInform), []byte(`{"modules":{"default":"1.0.0"}}`))
	o.eventually(func() bool {
		dev, err := o.api.Device(o.ctx(), "demo", "d2")
		return err == nil && dev.Versions["default"] == "1.0.0"
	}, "d2's version")
	task := o.create(o.ctx(), client.TaskCreate{FirmwareID: fw.ID, Mode: client.ModeRequest,
		Target: client.Target{Devices: []string{"d1", "d2"}}, Policy: client.Policy{Rate: 1}})
	o.waitTask(o.ctx(), task.ID, client.TaskRunning)
	var got []byte
	for _, key := range []string{"d1", "d2"} { // the first takes the minute's start
		got = o.deviceCall(http.MethodPost, wire.PathRequest, "demo/"+key, secrets[key], `{"module":"default"}`).body
	}
	m := sameAs(t, "paced no_upgrade", doc.example(t, "4.6", 1), got, "retry_after")
	if n, err := m["retry_after"].(json.Number).Int64(); err != nil || n < 1 || n > 61 {
		t.Errorf("paced reply retry_after %v; want the seconds until the next start of a rate of 1 a minute", m["retry_after"])
	}
}

// checkDiagramMessages: every complete message in the sequence diagrams of
// section 8 is a valid message of its kind.
func checkDiagramMessages(t *testing.T, doc protocolDoc) {
	t.Helper()
	if len(doc.diagram) == 0 {
		t.Fatal("no messages found in the sequence diagrams of docs/protocol.md")
	}
	for kind, msgs := range doc.diagram {
		for _, m := range msgs {
			if _, err := wire.Decode(kind, []byte(m)); err != nil {
				t.Errorf("section 8: %s %s is not a valid message: %v", kind, m, err)
			}
		}
	}
}

// The calls of section 6, as its table names them.
const (
	callInform   = "POST /device/v1/inform"
	callRequest  = "POST /device/v1/request"
	callConfirm  = "POST /device/v1/confirm"
	callProgress = "POST /device/v1/progress"
	callPoll     = "GET /device/v1/upgrade"
)

// TestProtocolDocHTTPCalls plays the calls and the errors of the HTTP
// device API's tables (section 6) with net/http: each call answers the
// documented status, the poll answers the command until the job ends and
// then the cancel, as the text under the table says.
func TestProtocolDocHTTPCalls(t *testing.T) {
	doc := readProtocolDoc(t)
	o := start(t)
	fw := o.docFirmware(doc)
	h := newDocHTTP(o, doc, o.devices("d1")["d1"])
	h.call(callInform, http.StatusNoContent, raw(t, doc.example(t, "4.1", 0), nil))
	sameAs(t, "request over HTTP", doc.example(t, "4.6", 0), h.call(callRequest, http.StatusOK, raw(t, doc.example(t, "4.2", 0), nil)))
	h.call(callPoll, http.StatusNoContent, nil)

	task := o.create(o.ctx(), client.TaskCreate{FirmwareID: fw.ID, Target: client.Target{Devices: []string{"d1"}}})
	up := h.command("polled command")
	job := up["job"].(string)
	h.call(callConfirm, http.StatusNoContent, raw(t, doc.example(t, "4.3", 0), map[string]any{"job": job}))
	h.call(callProgress, http.StatusNoContent, raw(t, doc.example(t, "4.4", 0), map[string]any{"job": job}))
	if again := h.command("poll after the first report"); again["job"] != job || again["attempt"] != up["attempt"] {
		t.Errorf("poll after the first report: job %v attempt %v; want job %s attempt %v again", again["job"], again["attempt"], job, up["attempt"])
	}
	if _, err := o.api.CancelTask(o.ctx(), task.ID); err != nil {
		t.Fatal(err)
	}
	cancel := map[string]any{"job": job, "cancel": true, "attempt": up["attempt"]}
	sameAs(t, "polled cancel", cancel, h.call(callPoll, http.StatusOK, nil))
	sameAs(t, "polled cancel, again", cancel, h.call(callPoll, http.StatusOK, nil))

	// A job that ends in failure leaves nothing pending.
	o.create(o.ctx(), client.TaskCreate{FirmwareID: fw.ID, Target: client.Target{Devices: []string{"d1"}}})
	job = h.command("the second task's command")["job"].(string)
	h.call(callProgress, http.StatusNoContent, raw(t, doc.example(t, "4.4", 1), map[string]any{"job": job}))
	h.call(callPoll, http.StatusNoContent, nil)
	o.docHTTPErrors(doc, "demo/d1", h.secret)
}

// docHTTP is device d1 of product demo calling the HTTP device API by the
// rows of section 6.
type docHTTP struct {
	o      *otter
	doc    protocolDoc
	rows   map[string][]string
	secret string
}

func newDocHTTP(o *otter, doc protocolDoc, secret string) docHTTP {
	o.t.Helper()
	h := docHTTP{o: o, doc: doc, rows: map[string][]string{}, secret: secret}
	for _, row := range doc.calls {
		h.rows[strings.Trim(row[0], "`")] = row
	}
	known := []string{callInform, callRequest, callConfirm, callProgress, callPoll}
	if got := slices.Sorted(maps.Keys(h.rows)); !slices.Equal(got, slices.Sorted(slices.Values(known))) {
		o.t.Fatalf("section 6 lists the calls %v; the test knows %v", got, known)
	}
	return h
}

// call makes a documented call, which must answer status want.
func (h docHTTP) call(name string, want int, body []byte) []byte {
	h.o.t.Helper()
	method, path, _ := strings.Cut(name, " ")
	r := h.o.deviceCall(method, path, "demo/d1", h.secret, string(body))
	if r.status != want {
		h.o.t.Fatalf("%s: HTTP %d %s; want %d as section 6 says (%s)", name, r.status, r.body, want, h.rows[name][2])
	}
	return r.body
}

// command polls until the answer is an upgrade command (not a cancel),
// which must match the example of section 4.5.
func (h docHTTP) command(what string) map[string]any {
	h.o.t.Helper()
	var body []byte
	h.o.eventually(func() bool {
		r := h.o.deviceCall(http.MethodGet, wire.PathUpgrade, "demo/d1", h.secret, "")
		u, err := wire.DecodeUpgrade(r.body)
		body = r.body
		return r.status == http.StatusOK && err == nil && !u.Cancel
	}, what)
	return sameAs(h.o.t, what, h.doc.example(h.o.t, "4.5", 0), body, "job", "size", "sha256", "signature", "url", "command_signature")
}

// docHTTPErrors: every status and code of the error table, where a test can
// cause it (busy and internal errors are the devicehttp package's tests).
func (o *otter) docHTTPErrors(doc protocolDoc, user, secret string) {
	t := o.t
	t.Helper()
	huge := `{"modules":{"default":"1.0.0"},"pad":"` + strings.Repeat("x", wire.MaxMessageSize) + `"}`
	cases := map[string]func() reply{
		"400 malformed":    func() reply { return o.deviceCall(http.MethodPost, wire.PathInform, user, secret, `{"modules":{}}`) },
		"401 unauthorized": func() reply { return o.deviceCall(http.MethodGet, wire.PathUpgrade, user, "wrong", "") },
		"404 unknown_job": func() reply {
			return o.deviceCall(http.MethodPost, wire.PathProgress, user, secret, `{"job":"424242","state":"downloaded"}`)
		},
		"404 unknown_topic":      func() reply { return o.deviceCall(http.MethodPost, wire.HTTPPrefix+"reboot", user, secret, `{}`) },
		"405 method_not_allowed": func() reply { return o.deviceCall(http.MethodGet, wire.PathInform, user, secret, "") },
		"413 too_large":          func() reply { return o.deviceCall(http.MethodPost, wire.PathInform, user, secret, huge) },
	}
	covered := 0
	for _, row := range doc.errors {
		codes := regexp.MustCompile("`(\\w+)`").FindAllStringSubmatch(row[1], -1)
		for _, status := range regexp.MustCompile(`\d{3}`).FindAllString(row[0], -1) {
			for _, code := range codes {
				run, ok := cases[status+" "+code[1]]
				if !ok {
					continue
				}
				covered++
				r := run()
				rep, err := wire.DecodeReply(r.body)
				if strconv.Itoa(r.status) != status || err != nil || rep.Error != code[1] {
					t.Errorf("section 6 says %s %s; the server answered %d %s", status, code[1], r.status, r.body)
				}
			}
		}
	}
	if covered != len(cases) {
		t.Errorf("the error table of section 6 lists %d of the %d errors the test causes", covered, len(cases))
	}
}

// reply is an HTTP answer of the device API.
type reply struct {
	status int
	body   []byte
}

func (o *otter) deviceCall(method, path, user, secret, body string) reply {
	o.t.Helper()
	req, err := http.NewRequestWithContext(o.ctx(), method, o.srv.HTTPURL()+path, strings.NewReader(body))
	if err != nil {
		o.t.Fatal(err)
	}
	req.SetBasicAuth(user, secret)
	if body != "" {
		req.Header.Set("Content-Type", wire.ContentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		o.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, body: b}
}

// docFirmware uploads version 1.1.0 of module default with the params of
// the upgrade example.
func (o *otter) docFirmware(doc protocolDoc) *client.Firmware {
	o.t.Helper()
	if _, err := o.api.CreateProduct(o.ctx(), client.ProductCreate{Key: "demo"}); err != nil {
		o.t.Fatal(err)
	}
	ex := doc.example(o.t, "4.5", 0)
	params := map[string]string{}
	for k, v := range ex["params"].(map[string]any) {
		params[k] = v.(string)
	}
	fw, err := o.api.UploadFirmware(o.ctx(), client.FirmwareUpload{Product: "demo", Module: ex["module"].(string),
		Version: ex["version"].(string), Params: params, AllowDowngrade: ex["allow_downgrade"].(bool)}, strings.NewReader("hello otter\n"))
	if err != nil {
		o.t.Fatal(err)
	}
	return fw
}

func (o *otter) devices(keys ...string) map[string]string {
	o.t.Helper()
	secrets := map[string]string{}
	for _, k := range keys {
		d, err := o.api.CreateDevice(o.ctx(), "demo", client.DeviceCreate{Key: k})
		if err != nil {
			o.t.Fatal(err)
		}
		secrets[k] = d.Secret
	}
	return secrets
}

// docDevice connects a raw device and subscribes as section 2 says.
func (o *otter) docDevice(key, secret string) *rawDevice {
	o.t.Helper()
	d, _, err := o.dialMQTT("demo", key, secret)
	if err != nil {
		o.t.Fatal(err)
	}
	d.subscribe(d.topic(wire.KindUpgrade), d.topic(wire.KindReply))
	return d
}

// jobIs waits until a job is in state (with percent, unless -1, and
// "code: message" when failure is set).
func (o *otter) jobIs(id string, state client.JobState, percent int, failure string) {
	o.t.Helper()
	n, _ := strconv.ParseInt(id, 10, 64)
	var j *client.Job
	deadline := time.Now().Add(20 * time.Second)
	for {
		var err error
		if j, err = o.api.Job(o.ctx(), n); err != nil {
			o.t.Fatal(err)
		}
		if j.State == state && (percent < 0 || j.Percent == percent) && (failure == "" || j.Code+": "+j.Message == failure) {
			return
		}
		if time.Now().After(deadline) {
			o.t.Fatalf("job %s is %s %d%% (%s: %s); want %s %d%% %s", id, j.State, j.Percent, j.Code, j.Message, state, percent, failure)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func withJob(m map[string]any, job string) map[string]any {
	m = maps.Clone(m)
	m["job"] = job
	return m
}

func anyMap(m map[string]string) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

func docText(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
