// Package leader chooses the one otter replica that runs the rollout
// engine. A replica campaigns until it leads; it then holds the leadership
// until the context it was given says otherwise, and must stop everything
// it leads the moment that context ends.
package leader

import (
	"context"
	"errors"
)

// ErrNotLeader is what Campaign returns without wait when another process
// leads.
var ErrNotLeader = errors.New("leader: another process leads")

// Elector grants leadership to at most one process at a time.
type Elector interface {
	// Campaign blocks until this process leads or ctx ends (then it
	// returns ctx's error); without wait it tries once and returns
	// ErrNotLeader, or any error of the attempt, when it does not lead. The returned context ends as soon as the
	// leadership is lost or may be lost (or ctx ends); release gives the
	// leadership up and must be called once the caller has stopped leading.
	Campaign(ctx context.Context, wait bool) (held context.Context, release func(), err error)
}

// Always is the elector of a process that is alone by construction (SQLite,
// one process): it leads at once, until ctx ends.
type Always struct{}

// Campaign returns at once.
func (Always) Campaign(ctx context.Context, _ bool) (context.Context, func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	held, cancel := context.WithCancel(ctx)
	return held, cancel, nil
}
