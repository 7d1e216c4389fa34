package ota

import "context"

type actorKey struct{}

// WithActor returns a context that names who acts (a token's name, "device",
// "engine"), so that the events a store writes record it.
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

// ActorFrom returns the actor named by WithActor, or "system".
func ActorFrom(ctx context.Context) string {
	if a, ok := ctx.Value(actorKey{}).(string); ok && a != "" {
		return a
	}
	return "system"
}
