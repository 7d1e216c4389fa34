package api

import (
	"context"
	"net/http"

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
}

func (a *API) serverRoutes() {
	register(a, ota.RoleViewer, huma.Operation{
		OperationID: "get-server", Method: http.MethodGet, Path: Prefix + "/server",
		Summary: "Describe the server", Tags: []string{"server"},
		Description: "The server's version, its device broker and the base URL devices download from.",
	}, a.getServer)
}

func (a *API) getServer(context.Context, *struct{}) (*bodyOutput[ServerInfo], error) {
	return bodyOf(a.info), nil
}
