package server

import (
	"strings"
	"testing"
)

func TestBaseURLsAreChecked(t *testing.T) {
	for _, c := range []struct {
		public, advertise string
		wantErr           string
	}{
		{"", "", ""},
		{"https://otter.example.com:8443", "http://10.0.0.5:8080/", ""},
		{"otter.example.com:8080", "", "--public-url"},
		{"", "10.0.0.5:8080", "--advertise-url"},
		{"ftp://host", "", "--public-url"},
		{"http://", "", "--public-url"},
		{"", "http://host/?a=1", "--advertise-url"},
		{"http://host/#x", "", "--public-url"},
		{"http://[::1", "", "--public-url"},
	} {
		err := Config{PublicURL: c.public, AdvertiseURL: c.advertise}.checkBaseURLs()
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("%q, %q: %v", c.public, c.advertise, err)
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("%q, %q: error %v, want one naming %s", c.public, c.advertise, err, c.wantErr)
		}
	}
}
