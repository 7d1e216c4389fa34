package dynsec

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// command is one dynamic security command; fields a command does not take
// are left out of its JSON.
type command struct {
	Command     string    `json:"command"`
	Username    string    `json:"username,omitempty"`
	Password    *string   `json:"password,omitempty"`
	Textname    string    `json:"textname,omitempty"`
	Rolename    string    `json:"rolename,omitempty"`
	Roles       []roleRef `json:"roles,omitempty"`
	ACLs        []ACL     `json:"acls,omitempty"`
	Verbose     bool      `json:"verbose,omitempty"`
	Count       int       `json:"count,omitempty"`
	Offset      int       `json:"offset,omitempty"`
	Correlation string    `json:"correlationData"`
}

// target names what a command acts on, for errors.
func (c command) target() string {
	if c.Username != "" {
		return c.Username
	}
	return c.Rolename
}

type roleRef struct {
	Rolename string `json:"rolename"`
	Priority int    `json:"priority"`
}

// response is the plugin's answer to one command.
type response struct {
	Command     string          `json:"command"`
	Error       string          `json:"error"`
	Data        json.RawMessage `json:"data"`
	Correlation string          `json:"correlationData"`
}

// ACL is one access rule of a role. Within a role, rules are tried from
// the highest priority down and the first whose topic matches decides.
type ACL struct {
	Type     string `json:"acltype"`
	Topic    string `json:"topic"`
	Priority int    `json:"priority"`
	Allow    bool   `json:"allow"`
}

// ACL types of the plugin.
const (
	PublishSend      = "publishClientSend"
	PublishReceive   = "publishClientReceive"
	SubscribeLiteral = "subscribeLiteral"
	SubscribePattern = "subscribePattern"
)

// CommandError is a command the plugin refused, with its reason.
type CommandError struct {
	Command string
	Target  string
	Message string
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("dynsec: %s %s: %s", e.Command, e.Target, e.Message)
}

// exists reports whether err says the client or role already exists.
func exists(err error) bool { return hasMessage(err, "already exists") }

// notFound reports whether err says the client or role does not exist.
func notFound(err error) bool { return hasMessage(err, "not found") }

func hasMessage(err error, text string) bool {
	var ce *CommandError
	return errors.As(err, &ce) && strings.Contains(strings.ToLower(ce.Message), text)
}
