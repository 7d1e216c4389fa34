package cli

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
)

func (a *app) serverCommand() *cobra.Command {
	return a.group("server", "Describe the running server", a.serverStatusCommand())
}

func (a *app) serverStatusCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the server's version, addresses and replicas",
		Long: `Show what the server says about itself: its version, database, device
broker and download URL, and its replicas (every otter process serving the
same database): which one schedules (runs the rollout engine), and when each
was last heard from. A replica not heard from for several heartbeats is
shown as gone until it is pruned.`,
		Example: `  otter server status
  otter server status -o json | jq '.replicas[] | select(.scheduling)'`,
		Args: needArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			info, err := a.client().ServerInfo(cmd.Context())
			if err != nil {
				return err
			}
			return a.render(info, func(w io.Writer) error {
				fields := []field{{"version", info.Version}, {"database", info.Database}, {"http", info.HTTP}, {"mqtt", info.MQTT}}
				if info.MQTTTLS != "" {
					fields = append(fields, field{"mqtt tls", info.MQTTTLS})
				}
				if err := writeFields(w, fields); err != nil {
					return err
				}
				fmt.Fprintln(w)
				t := newTable(w, "REPLICA", "URL", "VERSION", "SCHEDULING", "LAST HEARTBEAT", "STARTED")
				now := time.Now()
				for _, r := range info.Replicas {
					id := r.ID
					if r.This {
						id += " (this)"
					}
					sched := "no"
					if r.Scheduling {
						sched = "yes"
					}
					beat := now.Sub(r.Heartbeat).Round(time.Second).String() + " ago"
					if r.Gone {
						beat += " (gone)"
					}
					t.row(id, r.URL, r.Version, sched, beat, r.StartedAt.Local().Format(time.DateTime))
				}
				return t.flush()
			})
		},
	}
}
