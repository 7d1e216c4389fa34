package api

import (
	"context"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/otter-ota/otter/internal/ota"
)

// ServerInfo says what a server is and where devices reach it, so tools
// such as the simulator need only the API's address.
type ServerInfo struct {
	Version  string `json:"version" doc:"The server's version."`
	MQTT     string `json:"mqtt" doc:"The device MQTT broker, e.g. tcp://otter.example.com:1883; empty when none runs."`
	MQTTTLS  string `json:"mqtt_tls,omitempty" doc:"The broker's TLS listener, e.g. tls://otter.example.com:8883."`
	HTTP     string `json:"http" doc:"The base URL devices use for downloads and the HTTP device API."`
	Database string `json:"database" enum:"sqlite,postgres"`
	// Replicas is filled at every request (Config.Replicas).
	Replicas []Replica `json:"replicas" doc:"The otter processes serving this database, the scheduling one first. A replica gone for a while is listed until it is pruned."`
}

// Replica is one otter process serving the database.
type Replica struct {
	ID         string    `json:"id" doc:"The replica's id (host name and a random suffix, new at every start)."`
	URL        string    `json:"url" doc:"Where the other replicas forward to it (--advertise-url)."`
	Version    string    `json:"version"`
	StartedAt  time.Time `json:"started_at"`
	Heartbeat  time.Time `json:"heartbeat_at" doc:"Its last heartbeat."`
	Scheduling bool      `json:"scheduling" doc:"Whether it runs the rollout engine: exactly one live replica does, except for the seconds of a takeover."`
	// SchedulingSince is set when Scheduling is.
	SchedulingSince *time.Time `json:"scheduling_since,omitempty" doc:"When it took the lead."`
	This            bool       `json:"this" doc:"Whether it is the replica that answered."`
	Gone            bool       `json:"gone" doc:"No heartbeat for several periods: stopped or unreachable."`
}

func (a *API) serverRoutes() {
	register(a, ota.RoleViewer, huma.Operation{
		OperationID: "get-server", Method: http.MethodGet, Path: Prefix + "/server",
		Summary: "Describe the server", Tags: []string{"server"},
		Description: "The server's version, its device broker, the base URL devices download from, and its replicas: which one schedules and when each was last heard from.",
	}, a.getServer)
}

func (a *API) getServer(ctx context.Context, _ *struct{}) (*bodyOutput[ServerInfo], error) {
	info := a.info
	info.Replicas = []Replica{}
	if a.replicas != nil {
		rs, err := a.replicas(ctx)
		if err != nil {
			return nil, a.problem(ctx, err)
		}
		info.Replicas = rs
	}
	return bodyOf(info), nil
}
