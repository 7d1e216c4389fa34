// Package listenaddr suggests a listen address to use instead of one that
// another program holds, for the servers' "already in use" messages.
package listenaddr

import (
	"net"
	"strconv"
)

// Next is the next port on the same host as addr (":1883" gives ":1884"),
// never addr itself; fallback when addr has no usable port.
func Next(addr, fallback string) string {
	host, port, err := net.SplitHostPort(addr)
	n, perr := strconv.Atoi(port)
	if err != nil || perr != nil || n <= 0 || n >= 65535 {
		return fallback
	}
	return net.JoinHostPort(host, strconv.Itoa(n+1))
}
