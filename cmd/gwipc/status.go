package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gwipc/gwipc/engine"
	"github.com/gwipc/gwipc/simpleipc"
)

func init() {
	register(&command{
		name:    "status",
		summary: "show a gwipc node's status (peers, services, pools, counters)",
		usage: `gwipc status --socket PATH [--json]

Asks the node whose status endpoint (engine.Config.StatusPath) is at PATH for
its status and prints it as tables, or as the node's JSON with --json.
Exits 1 when no node answers or the answer is incomplete.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *env, []string) int {
			socket := fs.String("socket", "", "path of the node's status endpoint (required)")
			asJSON := fs.Bool("json", false, "print the node's JSON unchanged")
			timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
			return func(ctx context.Context, e *env, args []string) int {
				switch {
				case *socket == "":
					return usageError(e, commands["status"], "--socket is required")
				case len(args) > 0:
					return usageError(e, commands["status"], "unexpected arguments")
				}
				ctx, cancel := context.WithTimeout(ctx, *timeout)
				defer cancel()
				resp, err := simpleipc.Send(ctx, *socket, []byte("status"), nil)
				if err != nil {
					return fail(e, "status", "%v", err)
				}
				if *asJSON {
					e.stdout.Write(resp)
					return exitOK
				}
				var st engine.Status
				if err := json.Unmarshal(resp, &st); err != nil {
					return fail(e, "status", "the answer is not a gwipc status: %v", err)
				}
				printStatus(e.stdout, &st)
				return exitOK
			}
		},
	})
}

// printStatus renders a status snapshot as tables.
func printStatus(w io.Writer, st *engine.Status) {
	fmt.Fprintf(w, "node %q: %s at %s, pid %d\n", st.Name, st.Role, st.Path, st.PID)
	if d := st.Dialler; d != nil {
		state := "connected"
		if !d.Connected {
			state = "not connected"
			if d.LastError != "" {
				state += " (" + d.LastError + ")"
			}
		}
		fmt.Fprintf(w, "dialler: %s, %d attempts\n", state, d.Attempts)
	}
	c := st.Counters
	fmt.Fprintf(w, "counters: %d peers accepted, %d rejected, %d lost; %d protocol errors, %d policy rejections, %d quota hits\n",
		c.PeersAccepted, c.PeersRejected, c.PeersLost, c.ProtocolErrors, c.PolicyRejections, c.QuotaHits)

	table(w, "\nPEERS", "ID\tNAME\tPID\tUID\tGID\tSTATE\tMSGS IN/OUT\tDROPPED\tPENDING CALLS\tFINDS", st.Peers, func(p engine.PeerStatus) string {
		return fmt.Sprintf("%d\t%s\t%d\t%d\t%d\t%s\t%d/%d\t%d\t%d\t%s", p.ID, dash(p.Name), p.PID, p.UID, p.GID, p.State,
			p.MessagesIn, p.MessagesOut, p.UpdatesDropped, p.PendingCalls, dash(strings.Join(p.Finds, ",")))
	})
	table(w, "\nOFFERED", "SERVICE\tEVENTS\tMETHODS\tSLOTS USED\tBINDINGS\tPUBLISHED\tSENT\tDROPPED\tNO SLOT\tCALLS", st.Offers, func(o engine.OfferStatus) string {
		slots := "-"
		if o.Pool != nil {
			slots = fmt.Sprintf("%d/%d×%dB", o.Pool.InUse, o.Pool.SlotCount, o.Pool.SlotSize)
		}
		k := o.Counters
		return fmt.Sprintf("%s\t%d\t%d\t%s\t%d\t%d\t%d\t%d\t%d\t%d", o.Service, o.Events, o.Methods, slots, len(o.Bindings),
			k.Published, k.Sent, k.Dropped, k.NoSlot, k.Calls)
	})
	table(w, "\nREQUIRED", "SERVICE\tAVAILABLE\tPROVIDER\tSUBSCRIPTIONS\tRECEIVED\tGAPS\tCALLS\tPENDING", st.Proxies, func(p engine.ProxyStatus) string {
		var subs []string
		for _, s := range p.Subscriptions {
			subs = append(subs, fmt.Sprintf("%d:%s", s.Event, s.State))
		}
		provider := "-"
		if p.Available {
			provider = fmt.Sprint(p.Provider)
		}
		k := p.Counters
		return fmt.Sprintf("%s\t%v\t%s\t%s\t%d\t%d\t%d\t%d", p.Service, p.Available, provider, dash(strings.Join(subs, ",")),
			k.Received, k.Gaps, k.Calls, p.PendingCalls)
	})
	if len(st.Finders) > 0 {
		fmt.Fprintf(w, "\nFINDING: %s\n", strings.Join(st.Finders, ", "))
	}
}

// table prints a heading and one tab-aligned row per element (or "none").
func table[T any](w io.Writer, title, header string, rows []T, row func(T) string) {
	fmt.Fprintln(w, title)
	if len(rows) == 0 {
		fmt.Fprintln(w, "  none")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  "+header)
	for _, r := range rows {
		fmt.Fprintln(tw, "  "+row(r))
	}
	tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
