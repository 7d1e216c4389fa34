package client

import "context"

// ServerInfo describes a running server: its version and where devices
// reach it.
type ServerInfo struct {
	Version string `json:"version"`
	// MQTT is the device broker's URL, e.g. tcp://otter.example.com:1883;
	// "" when the server runs none.
	MQTT    string `json:"mqtt"`
	MQTTTLS string `json:"mqtt_tls,omitempty"`
	// HTTP is the base URL devices use for downloads and the HTTP device
	// API.
	HTTP string `json:"http"`
	// Database is "sqlite" or "postgres".
	Database string `json:"database"`
}

// ServerInfo returns what the server says about itself.
func (c *Client) ServerInfo(ctx context.Context) (*ServerInfo, error) {
	var out ServerInfo
	if err := c.call(ctx, request{method: "GET", path: "/server"}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
