package server

import (
	"fmt"
	"net/url"
)

// checkBaseURLs refuses a --public-url or --advertise-url that is not an
// absolute http(s) URL: devices would get download links, and replicas
// forwarding addresses, that lead nowhere, and only at the first use.
func (c Config) checkBaseURLs() error {
	for _, f := range []struct{ flag, value string }{{"--public-url", c.PublicURL}, {"--advertise-url", c.AdvertiseURL}, {"--download-public-url", c.DownloadPublicURL}} {
		if f.value == "" {
			continue
		}
		u, err := url.Parse(f.value)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("%s %q: give an absolute http:// or https:// URL without query, e.g. https://otter.example.com:8080", f.flag, f.value)
		}
	}
	if c.DownloadPublicURL != "" && c.DownloadAddr == "" {
		return fmt.Errorf("--download-public-url %q needs --download-http: without a download listener, download URLs lead to --http (--public-url)", c.DownloadPublicURL)
	}
	return nil
}
