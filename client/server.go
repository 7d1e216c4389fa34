package client

import (
	"context"
	"time"
)

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
	// Replicas are the otter processes serving the database, the
	// scheduling one first.
	Replicas []Replica `json:"replicas"`
}

// Replica is one otter process serving the database.
type Replica struct {
	ID      string `json:"id"`
	URL     string `json:"url"`
	Version string `json:"version"`
	// StartedAt is when it started, Heartbeat when it was last heard from.
	StartedAt time.Time `json:"started_at"`
	Heartbeat time.Time `json:"heartbeat_at"`
	// Scheduling says it runs the rollout engine; This that it answered;
	// Gone that it has not been heard from for several heartbeats.
	Scheduling bool `json:"scheduling"`
	// SchedulingSince is when it took the lead, set with Scheduling.
	SchedulingSince *time.Time `json:"scheduling_since,omitempty"`
	This            bool       `json:"this"`
	Gone            bool       `json:"gone"`
}

// ServerInfo returns what the server says about itself.
func (c *Client) ServerInfo(ctx context.Context) (*ServerInfo, error) {
	var out ServerInfo
	if err := c.call(ctx, request{method: "GET", path: "/server"}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
