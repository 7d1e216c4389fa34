// Package ota holds otter's domain: the types an OTA service talks about
// (products, devices, firmware, tasks, jobs, events, tokens) and the rules
// that govern them (version ordering, job and task state machines, policy
// evaluation, target selection). It performs no I/O: storage, transport and
// time are passed in by the callers, so every rule is testable with a table.
package ota
