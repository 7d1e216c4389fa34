// Package client is a Go client for otter's operator REST API (/api/v1).
//
// The CLI, the end-to-end tests and any Go program that manages products,
// devices, firmware, upgrade tasks, tokens or the event log use it:
//
//	c := client.New("http://localhost:8080", os.Getenv("OTTER_TOKEN"))
//	p, err := c.CreateProduct(ctx, client.ProductCreate{Key: "demo"})
//	for d, err := range c.AllDevices(ctx, client.DeviceFilter{Product: "demo"}, client.ListOptions{}) {
//		...
//	}
//
// The model types (Product, Device, Firmware, ...) mirror the API's JSON and
// are defined here rather than borrowed from otter's internal packages, so
// programs outside this module can name them.
//
// Every failed call that reached the server returns an *Error carrying the
// RFC 9457 problem details; use errors.As to inspect its Status and Code.
package client
