package ui

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"time"
)

// deliveryWait bounds how long a download waits for the client to
// acknowledge the last byte of the file.
const deliveryWait = 10 * time.Second

// errUnconfirmed: the bytes were still unacknowledged when deliveryWait
// ran out, with no sign of a broken connection (a slow link).
var errUnconfirmed = errors.New("delivery unconfirmed")

type connKey struct{}

// ConnContext keeps each request's connection in its context, so that a
// download can ask the kernel whether the client has acknowledged the file
// (awaitDelivery). serve sets it as the http.Server's ConnContext.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// awaitDelivery waits until the client's side of the connection has
// acknowledged every byte written to it, the connection broke, or wait
// ran out (errUnconfirmed). Without a connection to look at (a handler
// test, another OS) it returns nil at once. Behind a reverse proxy the
// acknowledgement is the proxy's: that the proxy took the file, not that
// the browser saved it.
func awaitDelivery(ctx context.Context, wait time.Duration) error {
	c, _ := ctx.Value(connKey{}).(net.Conn)
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if c == nil {
		return nil
	}
	return awaitAcked(c, wait)
}
