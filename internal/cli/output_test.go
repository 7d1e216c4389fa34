package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/otter-ota/otter/client"
)

var testNow = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

func TestFormatAge(t *testing.T) {
	tests := []struct {
		ago  time.Duration
		want string
	}{
		{-5 * time.Second, "just now"},
		{0, "just now"},
		{42 * time.Second, "42s ago"},
		{3*time.Minute + 59*time.Second, "3m ago"},
		{5 * time.Hour, "5h ago"},
		{47 * time.Hour, "47h ago"},
		{3 * 24 * time.Hour, "3d ago"},
		{59 * 24 * time.Hour, "59d ago"},
		{400 * 24 * time.Hour, "2025-02-03"},
	}
	for _, tt := range tests {
		if got := formatAge(testNow.Add(-tt.ago), testNow); got != tt.want {
			t.Errorf("formatAge(now-%v) = %q, want %q", tt.ago, got, tt.want)
		}
	}
	if got := formatOptAge(nil, testNow); got != "never" {
		t.Errorf("formatOptAge(nil) = %q, want never", got)
	}
}

func TestFormatPairs(t *testing.T) {
	tests := []struct {
		in   map[string]string
		want string
	}{
		{nil, "-"},
		{map[string]string{}, "-"},
		{map[string]string{"site": "paris"}, "site=paris"},
		{map[string]string{"b": "2", "a": "1", "c": ""}, "a=1,b=2,c="},
	}
	for _, tt := range tests {
		if got := formatPairs(tt.in); got != tt.want {
			t.Errorf("formatPairs(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestFormatSize(t *testing.T) {
	tests := []struct {
		n    int64
		want string
	}{
		{0, "0 B"},
		{1023, "1023 B"},
		{1024, "1.0 KiB"},
		{1536, "1.5 KiB"},
		{5 << 20, "5.0 MiB"},
		{2 << 30, "2.0 GiB"},
		{1 << 62, "4.0 EiB"},
	}
	for _, tt := range tests {
		if got := formatSize(tt.n); got != tt.want {
			t.Errorf("formatSize(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

func TestWriteTables(t *testing.T) {
	seen := testNow.Add(-90 * time.Second)
	created := testNow.Add(-3 * 24 * time.Hour)
	tests := []struct {
		name  string
		write func(*bytes.Buffer) error
		want  string
	}{
		{"products", func(b *bytes.Buffer) error {
			return writeProducts(b, []client.Product{
				{Key: "demo", Name: "Demo\tboard", Protocol: "otter", CreatedAt: created},
				{Key: "thermostat-v2", Description: "two\nlines", Protocol: "enos", CreatedAt: created},
			}, testNow)
		}, `
KEY            NAME        PROTOCOL  CREATED  DESCRIPTION
demo           Demo board  otter     3d ago   -
thermostat-v2  -           enos      3d ago   two lines
`},
		{"no products", func(b *bytes.Buffer) error { return writeProducts(b, nil, testNow) }, `
KEY  NAME  PROTOCOL  CREATED  DESCRIPTION
`},
		{"devices", func(b *bytes.Buffer) error {
			return writeDevices(b, []client.Device{
				{Product: "demo", Key: "d1", Online: true, LastSeen: &seen, Versions: map[string]string{"default": "1.0.0", "modem": "2.1"}, Tags: map[string]string{"site": "paris", "ring": "beta"}},
				{Product: "demo", Key: "d2"},
			}, testNow)
		}, `
PRODUCT  KEY  ONLINE  LAST SEEN  VERSIONS                 TAGS
demo     d1   yes     1m ago     default=1.0.0,modem=2.1  ring=beta,site=paris
demo     d2   no      never      -                        -
`},
		{"firmware", func(b *bytes.Buffer) error {
			return writeFirmwareList(b, []client.Firmware{
				{ID: 3, Product: "demo", Module: "default", Version: "1.1.0", Size: 3 << 20, SHA256: strings.Repeat("ab", 32), FromVersions: []string{"1.0.0", "1.0.1"}, VerifyRequired: true, Status: "active", CreatedAt: created},
				{ID: 4, Product: "demo", Module: "modem", Version: "2.0", Size: 10, SHA256: strings.Repeat("cd", 32), VerifyRequired: true, VerifiedBy: 7, Status: "deprecated", CreatedAt: created},
			}, testNow)
		}, `
ID  PRODUCT  MODULE   VERSION  STATUS      SIZE     SHA256        FROM         VERIFIED      CREATED
3   demo     default  1.1.0    active      3.0 MiB  abababababab  1.0.0,1.0.1  required      3d ago
4   demo     modem    2.0      deprecated  10 B     cdcdcdcdcdcd  -            yes (task 7)  3d ago
`},
		{"tokens", func(b *bytes.Buffer) error {
			return writeTokens(b, []client.Token{
				{ID: 1, Name: "admin", Role: client.RoleAdmin, CreatedAt: created, LastUsedAt: &seen},
				{ID: 2, Role: client.RoleViewer, CreatedAt: created, RevokedAt: &seen},
			}, testNow)
		}, `
ID  NAME   ROLE    CREATED  LAST USED  REVOKED
1   admin  admin   3d ago   1m ago     -
2   -      viewer  3d ago   never      1m ago
`},
		{"events", func(b *bytes.Buffer) error {
			return writeEvents(b, []client.Event{
				{At: seen, Actor: "ci", Kind: "firmware", Action: "created", Product: "demo", FirmwareID: 3, Message: "firmware demo/default 1.1.0"},
				{At: seen, Actor: "engine", Kind: "job", Action: "failed", Product: "demo", Device: "d1", TaskID: 2, JobID: 9, Data: map[string]string{"code": "verify_failed"}},
				{At: created, Actor: "admin", Kind: "token", Action: "created"},
			}, testNow)
		}, `
TIME    ACTOR   KIND      ACTION   SUBJECT               MESSAGE
1m ago  ci      firmware  created  demo firmware 3       firmware demo/default 1.1.0
1m ago  engine  job       failed   demo/d1 task 2 job 9  code=verify_failed
3d ago  admin   token     created  -                     -
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := tt.write(&b); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(strings.TrimPrefix(tt.want, "\n"), b.String()); diff != "" {
				t.Errorf("output (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWriteDetails(t *testing.T) {
	created := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		write func(*bytes.Buffer) error
		want  string
	}{
		{"device with secret", func(b *bytes.Buffer) error {
			d := client.Device{Product: "demo", Key: "d1", Tags: map[string]string{"site": "paris"}, CreatedAt: created}
			return writeDevice(b, &d, "00ff", testNow)
		}, `
product:   demo
key:       d1
secret:    00ff
online:    no
last seen: never
versions:  -
tags:      site=paris
created:   2026-03-01T08:00:00Z
`},
		{"firmware", func(b *bytes.Buffer) error {
			return writeFirmware(b, &client.Firmware{ID: 3, Product: "demo", Module: "default", Version: "1.1.0", Size: 2048, SHA256: "abc", Params: map[string]string{"reboot": "soft"}, Status: "deleted", CreatedAt: created})
		}, `
id:              3
product:         demo
module:          default
version:         1.1.0
status:          deleted
size:            2048 (2.0 KiB)
sha256:          abc
from:            -
params:          reboot=soft
verified:        not required
allow downgrade: no
description:     -
created:         2026-03-01T08:00:00Z
`},
		{"token with secret", func(b *bytes.Buffer) error {
			return writeToken(b, &client.Token{ID: 2, Name: "ci", Role: client.RoleViewer, CreatedAt: created}, "otr_x")
		}, `
id:      2
name:    ci
role:    viewer
token:   otr_x
created: 2026-03-01T08:00:00Z
revoked: -
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := tt.write(&b); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(strings.TrimPrefix(tt.want, "\n"), b.String()); diff != "" {
				t.Errorf("output (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWriteJSONEmptyListIsArray(t *testing.T) {
	items, err := collect[client.Device](func(func(client.Device, error) bool) {}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := writeJSON(&b, items); err != nil {
		t.Fatal(err)
	}
	if got := b.String(); got != "[]\n" {
		t.Errorf("empty list printed %q, want []", got)
	}
}

func TestWriteSecretsCSV(t *testing.T) {
	var b bytes.Buffer
	err := writeSecretsCSV(&b, []client.ImportedDevice{{Key: "d1", Secret: "aa"}, {Key: "a,b", Secret: "bb"}})
	if err != nil {
		t.Fatal(err)
	}
	want := "key,secret\nd1,aa\n\"a,b\",bb\n"
	if b.String() != want {
		t.Errorf("CSV = %q, want %q", b.String(), want)
	}
}
