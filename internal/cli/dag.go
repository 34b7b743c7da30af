package cli

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tasker-systems/tasker"
)

// layers groups steps into topological layers: layer 0 holds the steps
// without parents, layer n the steps whose deepest parent is in layer n-1.
// Within a layer, steps keep their given order. Parents that are not among
// the steps are ignored; a cycle (which a stored task cannot have) puts the
// remaining steps in one last layer.
func layers(steps []*tasker.Step) [][]*tasker.Step {
	byName := make(map[string]*tasker.Step, len(steps))
	for _, st := range steps {
		byName[st.Name] = st
	}
	depth := make(map[string]int, len(steps))
	const visiting = -1
	var visit func(st *tasker.Step) int
	visit = func(st *tasker.Step) int {
		if d, ok := depth[st.Name]; ok {
			if d == visiting {
				return 0
			}
			return d
		}
		depth[st.Name] = visiting
		d := 0
		for _, p := range st.Parents {
			if ps, ok := byName[p]; ok {
				d = max(d, visit(ps)+1)
			}
		}
		depth[st.Name] = d
		return d
	}
	var out [][]*tasker.Step
	for _, st := range steps {
		d := visit(st)
		for len(out) <= d {
			out = append(out, nil)
		}
		out[d] = append(out[d], st)
	}
	return out
}

// drawDAG writes the steps layer by layer: a layer number, the state marker
// (coloured when p is on), name, state, attempts, duration and the parents
// as "<- a, b"; a failed step gets its last error on the next line.
func drawDAG(w io.Writer, steps []*tasker.Step, starts stepTimes, now time.Time, p painter) {
	nameW, stateW, attW, durW := 0, 0, 0, 0
	durs := make(map[*tasker.Step]string, len(steps))
	for _, st := range steps {
		nameW = max(nameW, len(st.Name))
		stateW = max(stateW, len(st.State))
		attW = max(attW, len(fmt.Sprintf("%d/%d", st.Attempts, st.MaxAttempts)))
		if d, ok := stepDuration(st, starts, now); ok {
			durs[st] = fmtDuration(d)
			durW = max(durW, len(durs[st]))
		}
	}
	for i, layer := range layers(steps) {
		for j, st := range layer {
			num := ""
			if j == 0 {
				num = fmt.Sprintf("%d", i+1)
			}
			marker, style := stepStyle(st.State)
			line := fmt.Sprintf("%3s  %s %s  %s  %s", num, p.paint(style, marker), pad(st.Name, nameW),
				p.paint(style, pad(string(st.State), stateW)), pad(fmt.Sprintf("%d/%d", st.Attempts, st.MaxAttempts), attW))
			if durW > 0 {
				line += "  " + pad(durs[st], durW)
			}
			if len(st.Parents) > 0 {
				line += "  <- " + parentList(st.Parents)
			}
			fmt.Fprintln(w, strings.TrimRight(line, " "))
			switch st.State {
			case "error", "waiting_for_retry":
				if msg, ok := errorMessage(st.Error); ok {
					indent := strings.Repeat(" ", 7)
					fmt.Fprintln(w, indent+p.paint(ansiRed, "last error: "+oneLine(msg)))
				}
			}
		}
	}
}
