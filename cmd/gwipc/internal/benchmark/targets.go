package benchmark

import (
	"bytes"
	"fmt"
	"text/tabwriter"
)

// Target is one of gwipc's performance goals checked against a report: a
// ratio (the median over the passes of the ratio inside each pass) and the
// bound it should stay within.
type Target struct {
	Goal      string  `json:"goal"`
	Placement string  `json:"placement"`
	Contender string  `json:"contender"`
	Against   string  `json:"against"` // a baseline family, or the figure compared with
	AtMost    bool    `json:"at_most"` // the ratio should be ≤ Bound (latency), else ≥ Bound
	Bound     float64 `json:"bound"`
	Ratio     float64 `json:"ratio"`
	Spread    float64 `json:"spread"`
	Met       bool    `json:"met"`
}

// targetSpec says where a target's ratio is found: a gwipc contender's
// ratio to a baseline family in a row, or (self > 0) its primary figure in
// the row over its own in the row of size self.
type targetSpec struct {
	goal, place, section string
	size                 int
	contender, family    string
	self                 int
	atMost               bool
	bound                float64
}

// targetSpecs are the goals docs/PERFORMANCE.md states.
var targetSpecs = []targetSpec{
	{goal: "event one-way 64 B p50, parked", place: "pin00", section: "oneway", size: 64, contender: "gwipc dispatch copy", family: familyUDS, atMost: true, bound: 0.9},
	{goal: "event one-way 64 B p50, parked", place: "pin01", section: "oneway", size: 64, contender: "gwipc dispatch copy", family: familyUDS, atMost: true, bound: 1.0},
	{goal: "event one-way 64 B p50, spinning", place: "pin01", section: "oneway", size: 64, contender: "gwipc spin copy", family: familyUDS, atMost: true, bound: 0.1},
	{goal: "event one-way 1 MiB by loan p50 over 64 B's", place: "pin01", section: "oneway", size: mib, contender: "gwipc dispatch loan", self: 64, atMost: true, bound: 1.2},
	{goal: "event one-way 1 MiB by loan p50 over 64 B's", place: "pin00", section: "oneway", size: mib, contender: "gwipc dispatch loan", self: 64, atMost: true, bound: 1.2},
	{goal: "events/s 64 B", place: "pin01", section: "rate", size: 64, contender: "gwipc dispatch", family: familyZMQ, bound: 1.5},
	{goal: "events/s 64 B, spinning", place: "pin01", section: "rate", size: 64, contender: "gwipc spin", family: familyZMQ, bound: 1.5},
	{goal: "events/s 64 B", place: "pin00", section: "rate", size: 64, contender: "gwipc dispatch", family: familyZMQ, bound: 1.0},
	{goal: "method round trip 64 B p50, parked", place: "pin01", section: "rtt", size: 64, contender: "gwipc dispatch", family: familyUDS, atMost: true, bound: 1.0},
	{goal: "method round trip 64 B p50, parked", place: "pin00", section: "rtt", size: 64, contender: "gwipc dispatch", family: familyUDS, atMost: true, bound: 1.0},
	{goal: "method round trip 64 B p50, spinning", place: "pin01", section: "rtt", size: 64, contender: "gwipc spin", family: familyUDS, atMost: true, bound: 0.1},
	{goal: "GB/s 1 MiB, subscriber reading", place: "pin01", section: "bandwidth", size: mib, contender: "gwipc dispatch", family: familyMemfd, bound: 0.9},
	{goal: "GB/s 1 MiB, subscriber reading", place: "pin00", section: "bandwidth", size: mib, contender: "gwipc dispatch", family: familyMemfd, bound: 0.9},
}

// targets checks every target whose figures the report has (a quick run, a
// placement or section left out, or a baseline not installed leaves some
// out).
func (r *Report) targets() []Target {
	var ts []Target
	for _, sp := range targetSpecs {
		sec := r.section(sp.place, sp.section)
		if sec == nil {
			continue
		}
		c := sec.contender(sp.size, sp.contender)
		if c == nil {
			continue
		}
		t := Target{Goal: sp.goal, Placement: sp.place, Contender: sp.contender, AtMost: sp.atMost, Bound: sp.bound}
		if sp.self > 0 {
			base := sec.contender(sp.self, sp.contender)
			if base == nil {
				continue
			}
			t.Against = sizeName(sp.self) + " " + sp.contender
			var v []float64
			for p := range min(len(c.Passes), len(base.Passes)) {
				v = append(v, ratio(c.Passes[p].primary(sec.Throughput), base.Passes[p].primary(sec.Throughput)))
			}
			t.Ratio, t.Spread = medianSpread(v)
		} else {
			rt := c.ratio(sp.family)
			if rt == nil {
				continue
			}
			t.Against, t.Ratio, t.Spread = sp.family, rt.Median, rt.Spread
		}
		t.Met = t.Ratio > 0 && (t.AtMost && t.Ratio <= t.Bound || !t.AtMost && t.Ratio >= t.Bound)
		ts = append(ts, t)
	}
	return ts
}

// section finds a placement's section by key.
func (r *Report) section(place, key string) *SectionReport {
	for i := range r.Placements {
		if r.Placements[i].Name != place {
			continue
		}
		for j := range r.Placements[i].Sections {
			if s := &r.Placements[i].Sections[j]; s.Key == key {
				return s
			}
		}
	}
	return nil
}

// contender finds a contender by name in the row of the given size.
func (s *SectionReport) contender(size int, name string) *ContenderReport {
	for i := range s.Rows {
		if s.Rows[i].Size != size {
			continue
		}
		for j := range s.Rows[i].Contenders {
			if c := &s.Rows[i].Contenders[j]; c.Name == name {
				return c
			}
		}
	}
	return nil
}

// ratio is the contender's ratio to a baseline family, if that ran.
func (c *ContenderReport) ratio(family string) *Ratio {
	for i := range c.Ratios {
		if rt := &c.Ratios[i]; rt.Family == family && rt.Median > 0 {
			return rt
		}
	}
	return nil
}

// writeTargets appends the targets table.
func (r *Report) writeTargets(b *bytes.Buffer) {
	if len(r.Targets) == 0 {
		return
	}
	met := 0
	for _, t := range r.Targets {
		if t.Met {
			met++
		}
	}
	fmt.Fprintf(b, "\ntargets (docs/PERFORMANCE.md): %d of %d met\n", met, len(r.Targets))
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "goal\tplacement\tcontender\tagainst\tratio\ttarget\t")
	for _, t := range r.Targets {
		op, verdict := "≥", "missed"
		if t.AtMost {
			op = "≤"
		}
		if t.Met {
			verdict = "met"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.2f %s\t%s %.1f\t%s\n", t.Goal, t.Placement, t.Contender, t.Against,
			t.Ratio, spread(t.Spread), op, t.Bound, verdict)
	}
	tw.Flush()
}
