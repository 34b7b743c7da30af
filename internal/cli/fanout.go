package cli

import (
	"fmt"
	"strings"

	"github.com/tasker-systems/tasker/internal/template"
)

// parentList renders a step's parents for the DAG view: a fan-out
// placeholder's children (NAME[0] .. NAME[n-1], possibly thousands) as one
// entry "NAME[0..n-1]" where they first appear, other parents as they are.
func parentList(parents []string) string {
	count := map[string]int{}
	for _, p := range parents {
		if name, _, ok := template.FanOutParent(p); ok {
			count[name]++
		}
	}
	out := make([]string, 0, len(parents))
	written := map[string]bool{}
	for _, p := range parents {
		name, _, ok := template.FanOutParent(p)
		switch {
		case !ok || count[name] < 2:
			out = append(out, p)
		case !written[name]:
			out = append(out, fmt.Sprintf("%s[0..%d]", name, count[name]-1))
			written[name] = true
		}
	}
	return strings.Join(out, ", ")
}

// fanOutTemplateStep is the template step a fan-out child (NAME[i]) was
// made from, the step itself otherwise: children have their step's settings.
func fanOutTemplateStep(step string) string {
	if name, _, ok := template.FanOutParent(step); ok {
		return name
	}
	return step
}
