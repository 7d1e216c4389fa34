// Package wire defines otter's device protocol: the MQTT topics, the JSON
// messages on them, their decoders and the signed firmware manifest. It
// depends on the standard library only, so the server, the device SDK and
// any device program share one definition of the protocol.
package wire
