package device

import (
	"time"

	"github.com/otter-ota/otter/sdk/wire"
)

// EventKind names what the client did or saw.
type EventKind string

// Event kinds, roughly in the order an upgrade produces them.
const (
	EventConnected    EventKind = "connected"     // connected to the broker (or HTTP mode started)
	EventDisconnected EventKind = "disconnected"  // lost the broker
	EventConnectError EventKind = "connect_error" // a connection attempt failed; Err says why
	EventInformed     EventKind = "informed"      // sent an inform; Versions
	EventUpgrade      EventKind = "upgrade"       // received a new upgrade and started it
	EventDuplicate    EventKind = "duplicate"     // received a job it already has or had; not started twice
	EventBusy         EventKind = "busy"          // received another job while one runs; left for the server to resend
	EventConfirmed    EventKind = "confirmed"     // answered a confirmation; Accept
	EventProgress     EventKind = "progress"      // sent a progress report; State, Percent, Code
	EventRetry        EventKind = "retry"         // a download or report failed and waits Delay; Err
	EventCancelled    EventKind = "cancelled"     // the server withdrew the job before installation
	EventSucceeded    EventKind = "succeeded"     // after the reboot the target version runs
	EventFailed       EventKind = "failed"        // the job ended in failure; Code, Err
	EventReply        EventKind = "reply"         // the server answered with an error; Code, Err
	EventError        EventKind = "error"         // something else went wrong; Err
)

// Event is one thing the client did, for Config.OnEvent. Fields that do not
// apply to the kind are zero.
type Event struct {
	Kind     EventKind
	At       time.Time
	Job      string
	Attempt  int
	Module   string
	Version  string // the job's target version
	State    wire.State
	Percent  int
	Code     string // a failure or reply code
	Accept   bool
	Stage    wire.Stage // with EventConfirmed: which confirmation
	Delay    time.Duration
	Versions map[string]string
	Err      error
}

// jobEvent returns an event of kind k about upgrade up.
func jobEvent(k EventKind, up wire.Upgrade) Event {
	return Event{Kind: k, Job: up.Job, Attempt: up.Attempt, Module: up.Module, Version: up.Version}
}
